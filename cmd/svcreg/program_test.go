package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// missingProgramEnv makes TestMissingProgramHelper ask for a program that
// is not installed.
const missingProgramEnv = "SVCREG_TEST_MISSING_PROGRAM"

func TestMissingProgramHelper(t *testing.T) {
	if os.Getenv(missingProgramEnv) != "1" {
		return
	}
	program(t, "svcreg-no-such-load-balancer")
}

// A test that needs a load balancer that is not installed says which and
// how to get it: skipped on a laptop, failed in CI.
func TestMissingProgramSkipsOrFailsInCI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ci       string
		fails    bool
		wantLine string
	}{
		{"", false, "--- SKIP: TestMissingProgramHelper"},
		{"false", false, "--- SKIP: TestMissingProgramHelper"},
		{"true", true, "--- FAIL: TestMissingProgramHelper"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingProgramHelper$", "-test.v")
		cmd.Env = append(os.Environ(), missingProgramEnv+"=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.fails {
			t.Errorf("CI=%q: failed %v, want %v:\n%s", tc.ci, failed, tc.fails, out)
		}
		for _, want := range []string{tc.wantLine, "TestMissingProgramHelper needs svcreg-no-such-load-balancer, which is not installed", "make deps"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("CI=%q: output lacks %q:\n%s", tc.ci, want, out)
			}
		}
	}
}
