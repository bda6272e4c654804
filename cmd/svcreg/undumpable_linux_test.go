package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
)

// The --exec command runs as svcreg's user, which may read the memory and
// the environment of its own processes: svcreg must not let it read the
// registry credentials left out of the command's environment in its own
// (an internet-facing load balancer would then hold the account).
func TestExecCommandCannotReadTheCredentials(t *testing.T) {
	t.Parallel()
	// Root reads every process's memory: as root, run svcreg (and so its
	// command) as nobody.
	dir, bin, attr := testprog.AsNobody(t)
	_, c, env := registryEnv(t, testserver.Options{}, "undumpable")
	createService(t, c, "web-a", 120, nil, nil)
	config, _ := writeIDsConfig(t, dir, "")
	script := `if cat /proc/$PPID/environ > ` + dir + `/parent-env; then echo read; else echo refused; fi > ` + dir + `/result; while :; do sleep 0.05; done`
	cmd := exec.Command(bin, "template", "--config", config, "--state-dir", "none", "--exec", "sh -c '"+script+"'")
	cmd.Env = append(append(os.Environ(), execEnv+"=1", "HOME="+dir), env...)
	cmd.SysProcAttr = attr
	d := &daemon{cmd: cmd}
	cmd.Stdout, cmd.Stderr = &d.logs, &d.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	result := filepath.Join(dir, "result")
	// The shell makes the file before it writes the word and its newline.
	eventuallyTrue(t, "the command to say whether it read svcreg's environment", func() bool { return strings.HasSuffix(readString(result), "\n") })
	if got := strings.TrimSpace(readString(result)); got != "refused" {
		t.Errorf("the --exec command read svcreg's environment (%s): API key there: %v", got, strings.Contains(readString(filepath.Join(dir, "parent-env")), "SVCREG_API_KEY=dev"))
	}
	if t.Failed() {
		d.stop()
		t.Logf("svcreg template output:\n%s", d.output())
	}
}
