package testprog

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// AsNobody prepares a test that runs a copy of its own binary under a
// user other than root, for what root may do anyway (read any process's
// memory and environment). Run as root, it returns a directory every user
// may use, a copy of the test binary in it, and the attributes that run a
// process as nobody; otherwise t.TempDir(), os.Args[0] and nil.
func AsNobody(t *testing.T) (dir, bin string, attr *syscall.SysProcAttr) {
	t.Helper()
	if os.Geteuid() != 0 {
		return t.TempDir(), os.Args[0], nil
	}
	dir, err := os.MkdirTemp("", "as-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, filepath.Base(os.Args[0]))
	copyExecutable(t, os.Args[0], bin)
	return dir, bin, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
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
