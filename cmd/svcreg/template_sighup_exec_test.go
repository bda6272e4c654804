package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A SIGHUP whose config reloads a group by reload_signal, for an [exec]
// command the renderer did not start with (it takes [exec] at its start
// only), is refused: taken, it left the group with no reload that could
// pass, and every change after it was installed, failed its reload and
// was put back, until a restart.
func TestTemplateSighupRefusesASignalWithoutExec(t *testing.T) {
	t.Parallel()
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-sighup-signal-without-exec")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80"})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.tmpl"), []byte(`v {{len services}}`), 0o644)
	config := filepath.Join(dir, "render.toml")
	base := "[wait]\nmin = \"0s\"\n[[template]]\nsource = \"a.tmpl\"\ndestination = \"a.conf\"\n"
	os.WriteFile(config, []byte(base+"reload = \"echo r >> "+filepath.Join(dir, "reloads")+"\"\n"), 0o644)
	d := startDaemon(t, env, "--config", config)
	out := filepath.Join(dir, "a.conf")
	eventuallyTrue(t, "the first render", func() bool { return readString(out) == "v 1" })

	os.WriteFile(config, []byte(base+"reload_signal = \"SIGHUP\"\n[exec]\ncommand = [\"sleep\", \"1000\"]\n"), 0o644)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "the config refused", func() bool {
		return strings.Contains(d.output(), `msg="the config file could not be loaded; keeping the config and templates in use" why=SIGHUP`) &&
			strings.Contains(d.output(), "needs the [exec] command")
	})
	createService(t, c, "web-b", 120, []string{"www"}, map[string]string{"ip": "10.0.0.2", "port": "80"})
	eventuallyTrue(t, "the change installed and reloaded by the command in use", func() bool {
		return readString(out) == "v 2" && strings.Count(readString(filepath.Join(dir, "reloads")), "r\n") == 2
	})
}
