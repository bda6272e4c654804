package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
)

// TestTemplateReloads: a changed template file is re-read and rendered; one
// that no longer parses is logged and the old template kept; SIGHUP
// re-reads the config file, here adding a template.
func TestTemplateReloads(t *testing.T) {
	t.Parallel()
	_, c, env := registryEnv(t, testserver.Options{}, "e2e-reload")
	createService(t, c, "web-a", 120, []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80"})
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "a.tmpl")
	out := filepath.Join(dir, "a.conf")
	os.WriteFile(tmpl, []byte(`v1 {{len services}}`), 0o644)
	config := filepath.Join(dir, "render.toml")
	writeConfig := func(extra string) {
		os.WriteFile(config, []byte("[wait]\nmin = \"0s\"\n[[template]]\nsource = \"a.tmpl\"\ndestination = \"a.conf\"\n"+extra), 0o644)
	}
	writeConfig("")
	d := startDaemon(t, env, "--config", config)
	eventuallyTrue(t, "the first render", func() bool { return readString(out) == "v1 1" })

	// An editor's save: a new file renamed over the template.
	tmp := filepath.Join(dir, ".a.tmpl.swp")
	os.WriteFile(tmp, []byte(`v2 {{len services}}`), 0o644)
	os.Rename(tmp, tmpl)
	eventuallyTrue(t, "the changed template rendered", func() bool { return readString(out) == "v2 1" })

	os.WriteFile(tmpl, []byte(`v3 {{len services`), 0o644)
	eventuallyTrue(t, "the parse error logged", func() bool {
		return strings.Contains(d.output(), `msg="the templates could not be read or parsed; keeping the templates in use" why="template file changed"`) &&
			strings.Contains(d.output(), "a.tmpl:1")
	})
	createService(t, c, "web-b", 120, []string{"www"}, map[string]string{"ip": "10.0.0.2", "port": "80"})
	eventuallyTrue(t, "the old template to render the change", func() bool { return readString(out) == "v2 2" })

	os.WriteFile(tmpl, []byte(`v4 {{len services}}`), 0o644)
	eventuallyTrue(t, "the fixed template rendered", func() bool { return readString(out) == "v4 2" })

	// SIGHUP re-reads the config: a second template appears.
	os.WriteFile(filepath.Join(dir, "b.tmpl"), []byte(`b {{range services}}{{.ID}} {{end}}`), 0o644)
	writeConfig("[[template]]\nsource = \"b.tmpl\"\ndestination = \"b.conf\"\n")
	time.Sleep(300 * time.Millisecond) // the config file is not watched: only SIGHUP reads it
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "the template added by SIGHUP", func() bool { return readString(filepath.Join(dir, "b.conf")) == "b web-a web-b " })

	// A broken config on SIGHUP keeps everything as it is.
	os.WriteFile(config, []byte("[[template]]\nsource = \"a.tmpl\"\n"), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventuallyTrue(t, "the bad config refused", func() bool {
		return strings.Contains(d.output(), `msg="the config file could not be loaded; keeping the config and templates in use" why=SIGHUP`)
	})
	createService(t, c, "web-c", 120, []string{"www"}, map[string]string{"ip": "10.0.0.3", "port": "80"})
	eventuallyTrue(t, "both templates still rendered", func() bool {
		return readString(out) == "v4 3" && readString(filepath.Join(dir, "b.conf")) == "b web-a web-b web-c "
	})
}
