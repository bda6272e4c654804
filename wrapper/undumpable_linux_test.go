package wrapper_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
)

// The command runs as the wrapper's user, which may read the memory and
// the environment of its own processes: the wrapper must not let it read
// the credentials left out of the command's environment in its own.
func TestCommandCannotReadTheWrappersEnvironment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Root reads every process's memory: as root, run the wrapper (and so
	// its command) as nobody.
	dir, bin, attr := testprog.AsNobody(t)
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
