package procstat

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
)

// A command name may hold spaces and parentheses: the fields start after
// its last ')'.
func TestParseCommandNames(t *testing.T) {
	f, err := parse(7, []byte("7 (a) S (b)) Z 1 7 7\n"))
	if err != nil || !slices.Equal(f, []string{"Z", "1", "7", "7"}) {
		t.Errorf("parse = %q, %v", f, err)
	}
	if _, err := parse(7, []byte("7 no name")); err == nil {
		t.Error("a line without the name's parentheses: no error")
	}
}

// The fields of the test's own process: its state and parent, the command
// name's parentheses and spaces notwithstanding.
func TestFieldsOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/<pid>/stat is Linux's")
	}
	f, err := Fields(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(f) < 20 || f[0] != "R" && f[0] != "S" || f[1] != strconv.Itoa(os.Getppid()) {
		t.Errorf("Fields = %q; want the state R or S, then the parent %d", f, os.Getppid())
	}
	if _, err := Fields(-1); err == nil {
		t.Error("Fields of no process: no error")
	}
}
