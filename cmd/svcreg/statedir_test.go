package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A service registered as "api" beside the "API" services behind a name
// does not get the name at the next --once run: the spelling kept is read
// from --state-dir. With --state-dir none each run chooses anew, the
// all-lowercase one first.
func TestTemplateOnceKeepsItsSpelling(t *testing.T) {
	t.Parallel()
	const user = "e2e-state-dir"
	srv, c, _ := registryEnv(t, testserver.Options{}, user)
	dir := t.TempDir()
	src := filepath.Join(dir, "upstreams.tmpl")
	if err := os.WriteFile(src, []byte(`{{range $b, $eps := endpointsBy "backend" services}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dst, state := filepath.Join(dir, "upstreams.conf"), filepath.Join(dir, "state")
	once := func(stateDir, want string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args := []string{"template", "--once", "--template", src + ":" + dst, "--state-dir", stateDir,
			"--url", srv.APIURL, "--username", user, "--api-key", "dev"}
		if code := Main(context.Background(), args, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if got := readString(dst); got != want {
			t.Errorf("--state-dir %s: rendered %q; want %q\n%s", stateDir, got, want, stderr.String())
		}
	}
	createService(t, c, "a-1", 120, nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": "API"})
	once(state, "API:a-1 ")
	createService(t, c, "a-0", 120, nil, map[string]string{"ip": "10.0.0.2", "port": "80", "backend": "api"})
	once(state, "API:a-1 ")
	once("none", "api:a-0 ")
}

func TestTemplateStateDir(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag string
		env  map[string]string
		euid int
		want string
	}{
		{"none", map[string]string{"STATE_DIRECTORY": "/run/x"}, 0, ""},
		{"state", nil, 0, filepath.Join(wd, "state")},
		{"", map[string]string{"STATE_DIRECTORY": "/var/lib/a:/var/lib/b", "HOME": "/home/u"}, 1000, "/var/lib/a"},
		{"", map[string]string{"STATE_DIRECTORY": "relative", "HOME": "/home/u"}, 0, "/var/lib/svcreg-template"},
		{"", map[string]string{"XDG_STATE_HOME": "/home/u/st", "HOME": "/home/u"}, 1000, "/home/u/st/svcreg"},
		{"", map[string]string{"XDG_STATE_HOME": "st", "HOME": "/home/u"}, 1000, "/home/u/.local/state/svcreg"},
		{"", map[string]string{"HOME": "/"}, 1000, "/.local/state/svcreg"},
		{"", nil, 1000, ""},
	} {
		got, err := templateStateDir(tc.flag, func(k string) string { return tc.env[k] }, tc.euid)
		if err != nil || got != tc.want {
			t.Errorf("flag %q, env %v, euid %d: %q, %v; want %q", tc.flag, tc.env, tc.euid, got, err, tc.want)
		}
	}
}

// A renderer whose state directory is now /var/lib/svcreg-template takes
// the spellings files it kept in /var/lib/svcreg, as earlier releases
// did, at its first start there: else it would choose among names that
// differ only in case anew. Not once it has files of its own, and only
// regular files of its own user's.
func TestAdoptLegacyState(t *testing.T) {
	t.Parallel()
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "svcreg-template")
	for name, content := range map[string]string{"spellings-aa.json": `{"a":1}`, "spellings-bb.json": `{"b":2}`, "svcreg.db": "the registry's"} {
		if err := os.WriteFile(filepath.Join(from, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(from, "spellings-cc.json")); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	adoptLegacyState(log, from, to, os.Geteuid())
	entries, err := os.ReadDir(to)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		if info, _ := e.Info(); info.Mode().Perm() != 0o600 {
			t.Errorf("%s copied with mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if got := strings.Join(names, " "); got != "spellings-aa.json spellings-bb.json" {
		t.Errorf("copied %q; want the two spellings files, not the database nor a link", got)
	}
	if got := readString(filepath.Join(to, "spellings-bb.json")); got != `{"b":2}` {
		t.Errorf("copied %q", got)
	}
	if _, err := os.Stat(filepath.Join(from, "spellings-aa.json")); err != nil {
		t.Errorf("the former directory lost its file: %v", err)
	}
	// Once it has files of its own, nothing is copied over them.
	if err := os.WriteFile(filepath.Join(from, "spellings-aa.json"), []byte("newer in the old place"), 0o600); err != nil {
		t.Fatal(err)
	}
	adoptLegacyState(log, from, to, os.Geteuid())
	if got := readString(filepath.Join(to, "spellings-aa.json")); got != `{"a":1}` {
		t.Errorf("a file of the new directory was copied over: %q", got)
	}
	// Files of another user are not taken.
	other := filepath.Join(t.TempDir(), "svcreg-template")
	adoptLegacyState(log, from, other, os.Geteuid()+1)
	if _, err := os.Stat(other); err == nil {
		t.Error("files of another user were copied")
	}
}

// --print and --dry write nothing, also not the copy of the spellings
// kept in the former state directory: they read them there while the
// new one has none. A run that writes copies them.
func TestRootRunStateDirCopiesOnlyWhenWriting(t *testing.T) {
	t.Parallel()
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "svcreg-template")
	if err := os.WriteFile(filepath.Join(from, "spellings-aa.json"), []byte(`{"a":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if got := rootRunStateDir(log, from, to, os.Geteuid(), false); got != from {
		t.Errorf("a run that writes nothing reads %q; want the former directory %q", got, from)
	}
	if _, err := os.Stat(to); err == nil {
		t.Fatal("a run that writes nothing made the state directory")
	}
	if got := rootRunStateDir(log, from, to, os.Geteuid(), true); got != to {
		t.Errorf("a run that writes reads %q; want %q", got, to)
	}
	if got := readString(filepath.Join(to, "spellings-aa.json")); got != `{"a":1}` {
		t.Errorf("copied %q", got)
	}
	if got := rootRunStateDir(log, from, to, os.Geteuid(), false); got != to {
		t.Errorf("once the new directory has files, a run that writes nothing reads %q; want %q", got, to)
	}
}
