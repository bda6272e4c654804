package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
)

// The example systemd units read as systemd reads them, with no key or
// value it would ignore, and keep their sandboxes: systemd-analyze
// security rates each at most as exposed as its comment says ("rates it
// 1.4"), so a directive dropped or misspelled fails here.
func TestSystemdUnits(t *testing.T) {
	analyze := testprog.Find(t, "systemd-analyze", "to check the example systemd units; `make deps` installs it (apt-get install systemd)")
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units: %v", err)
	}
	rated := regexp.MustCompile(`rates it[\s#]+(\d+\.\d)`)
	for _, unit := range units {
		t.Run(filepath.Base(unit), func(t *testing.T) {
			b, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			// verify wants the programs the unit runs to exist: the
			// commands svcreg installs are this machine's true(1).
			copied := filepath.Join(t.TempDir(), filepath.Base(unit))
			text := regexp.MustCompile(`/usr/local/bin/[a-z-]+`).ReplaceAllString(string(b), "/bin/true")
			if err := os.WriteFile(copied, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(analyze, "verify", "--man=no", copied).CombinedOutput(); err != nil || len(out) != 0 {
				t.Errorf("systemd-analyze verify: %v: %s", err, out)
			}
			m := rated.FindStringSubmatch(string(b))
			if m == nil {
				t.Fatal(`the unit's comment does not say what systemd-analyze security rates it ("rates it N.N")`)
			}
			rating, _ := strconv.ParseFloat(m[1], 64)
			threshold := strconv.Itoa(int(rating*10 + 0.5))
			out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", "--threshold="+threshold, unit).CombinedOutput()
			if err != nil {
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				t.Errorf("systemd-analyze security rates it above %s: %v: %s", m[1], err, lines[len(lines)-1])
			}
			if strings.Contains(string(out), "ignoring") {
				t.Errorf("systemd-analyze security ignores part of the unit: %s", out)
			}
		})
	}
}
