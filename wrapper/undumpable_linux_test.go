package wrapper_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The command runs as the wrapper's user, which may read the memory and
// the environment of its own processes: the wrapper must not let it read
// the credentials left out of the command's environment in its own.
func TestCommandCannotReadTheWrappersEnvironment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Root reads every process's memory: as root, run the wrapper (and so
	// its command) as nobody, from a copy of the test binary that nobody
	// may run, in a directory nobody may write.
	dir, bin, attr := f.dir, os.Args[0], (*syscall.SysProcAttr)(nil)
	if os.Geteuid() == 0 {
		var err error
		if dir, err = os.MkdirTemp("", "undumpable-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "wrapper.test")
		copyExecutable(t, os.Args[0], bin)
		attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	script := `if tr '\0' '\n' < /proc/$PPID/environ > "$1/parent-env"; then echo read; else echo refused; fi > "$1/result"
` + untilStop
	w := startWrapperBin(t, bin, dir, nil, attr, f.env(), append([]string{"--id=undumpable", "--interval=1"}, sh(script, dir)...)...)
	killLater(t, filepath.Join(dir, "pid"))
	if got := waitFile(t, filepath.Join(dir, "result")); got != "refused" {
		env, _ := os.ReadFile(filepath.Join(dir, "parent-env"))
		t.Errorf("the command read the wrapper's environment (%s): API key there: %v", got, strings.Contains(string(env), "SVCREG_API_KEY=dev"))
	}
	touch(t, filepath.Join(dir, "stop"))
	if code := w.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
