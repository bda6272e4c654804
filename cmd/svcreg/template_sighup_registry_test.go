package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// A changed [registry] is not applied on SIGHUP: a warning names the keys
// that changed (never their values) and says a restart is needed, and the
// renderer goes on with the connection it started with.
func TestTemplateSIGHUPRegistryChangeNeedsARestart(t *testing.T) {
	t.Parallel()
	const user = "e2e-sighup-registry"
	srv, c, _ := registryEnv(t, testserver.Options{}, user)
	dir := t.TempDir()
	config := filepath.Join(dir, "render.toml")
	out := filepath.Join(dir, "ids.txt")
	write := func(username, key string) {
		toml := fmt.Sprintf("[registry]\nurl = %q\nusername = %q\napi_key = %q\n\n[wait]\nmin = \"0s\"\n\n[[template]]\ncontents = \"{{ range services }}{{ .ID }}\\n{{ end }}\"\ndestination = \"ids.txt\"\n",
			srv.APIURL, username, key)
		if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(user, "dev")
	d := startDaemon(t, nil, "--config", config)
	createService(t, c, "web-a", 120, nil, nil)
	eventuallyTrue(t, "the first render", func() bool { return readString(out) == "web-a\n" })
	if !strings.Contains(d.output(), `msg="svcreg template started" templates=1 `) {
		t.Errorf("the start line does not count the inline template:\n%s", d.output())
	}

	write("someone-else", "a-new-secret-key")
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventuallyTrue(t, "the warning", func() bool { return strings.Contains(d.output(), "restart svcreg template to use them") })
	eventuallyTrue(t, "the re-read", func() bool { return strings.Contains(d.output(), "re-read the config and templates") })
	logs := d.output()
	if !strings.Contains(logs, `msg="re-read the config and templates" why=SIGHUP templates=1`) {
		t.Errorf("the re-read does not count the inline template:\n%s", logs)
	}
	if !strings.Contains(logs, `changed="username, api_key"`) {
		t.Errorf("the warning does not name the changed keys:\n%s", logs)
	}
	if strings.Contains(logs, "a-new-secret-key") || strings.Contains(logs, "someone-else") {
		t.Errorf("the log shows a value of the new settings:\n%s", logs)
	}
	createService(t, c, "web-b", 120, nil, nil)
	eventuallyTrue(t, "a change rendered with the connection it started with", func() bool { return readString(out) == "web-a\nweb-b\n" })
}

// registryChanges names every setting of [registry]: a key added to
// registry.Config is not changed silently.
func TestRegistryChangesCoversEveryKey(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[registry.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		key := f.Tag.Get("toml")
		if key == "" || key == "-" {
			continue
		}
		var changed registry.Config
		v := reflect.ValueOf(&changed).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Int:
			v.SetInt(7)
		default:
			t.Fatalf("field %s: kind %s not handled", f.Name, v.Kind())
		}
		if got := registryChanges(registry.Config{}, changed); len(got) != 1 || got[0] != key {
			t.Errorf("a changed %s: registryChanges = %q, want [%s]", f.Name, got, key)
		}
	}
}

// The settings a running renderer took at its start (listen, resync,
// outage, [exec]) are not applied on SIGHUP either: the warning names
// them, rather than the re-read seeming to have applied them.
func TestTemplateSIGHUPStartSettingsNeedARestart(t *testing.T) {
	t.Parallel()
	const user = "e2e-sighup-start"
	srv, c, _ := registryEnv(t, testserver.Options{}, user)
	dir := t.TempDir()
	config := filepath.Join(dir, "render.toml")
	out := filepath.Join(dir, "ids.txt")
	write := func(extra string) {
		toml := fmt.Sprintf("%s\n[registry]\nurl = %q\nusername = %q\napi_key = \"dev\"\n\n[wait]\nmin = \"0s\"\n\n[[template]]\ncontents = \"{{ range services }}{{ .ID }}\\n{{ end }}\"\ndestination = \"ids.txt\"\n",
			extra, srv.APIURL, user)
		if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	d := startDaemon(t, nil, "--config", config)
	createService(t, c, "web-a", 120, nil, nil)
	eventuallyTrue(t, "the first render", func() bool { return readString(out) == "web-a\n" })

	write("listen = \"127.0.0.1:0\"\nresync = \"1h\"\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventuallyTrue(t, "the re-read", func() bool { return strings.Contains(d.output(), "re-read the config and templates") })
	logs := d.output()
	if !strings.Contains(logs, `changed="listen, resync"`) || !strings.Contains(logs, "restart svcreg template") {
		t.Errorf("no warning names the settings that take a restart:\n%s", logs)
	}
}
