package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testfs"
	"github.com/svcreg/svcreg/internal/testserver"
)

// loadTemplateConfig reads a config file as svcreg template --config
// does, with no other flag.
func loadTemplateConfig(path string) (templateConfig, error) {
	f := templateFlags{config: path}
	return f.loadConfig(flag.NewFlagSet("template", flag.ContinueOnError))
}

// The config file's [registry] says how to reach the registry; a flag
// given on the command line wins over it, and it over the SVCREG_*
// environment. A key [registry] does not know is a config error.
func TestTemplateConfigRegistryTable(t *testing.T) {
	srv, c, _ := registryEnv(t, testserver.Options{}, "file-user")
	createService(t, c, "from-file", 60, nil, nil)
	clearRegistryEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ids.tmpl"), []byte("{{ range services }}{{ .ID }}\n{{ end }}"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := func(name, registryTable string) string {
		p := filepath.Join(dir, name+".toml")
		body := "[registry]\n" + registryTable + "\n[[template]]\nsource = \"ids.tmpl\"\ndestination = \"" + name + ".out\"\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, table string
		env, args   []string
		code        int
		stderr      string
	}{
		{"file only", `url = "` + srv.APIURL + `"` + "\nusername = \"file-user\"\napi_key = \"dev\"", nil, nil, 0, ""},
		// The file's URL leads nowhere: --url wins; the API key comes
		// from the environment, which the file leaves empty.
		{"flag over file over environment", "url = \"http://127.0.0.1:1/v1.0\"\nusername = \"file-user\"",
			[]string{"SVCREG_API_KEY", "dev", "SVCREG_USERNAME", "env-user"}, []string{"--url", srv.APIURL}, 0, ""},
		{"unknown key", `url = "` + srv.APIURL + `"` + "\nusername = \"file-user\"\napi_key = \"dev\"\nuser_agent = \"x\"", nil, nil, exitConfig, "unknown key(s) registry.user_agent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < len(tc.env); i += 2 {
				t.Setenv(tc.env[i], tc.env[i+1])
			}
			name := strings.ReplaceAll(tc.name, " ", "-")
			args := append([]string{"template", "--once", "--config", config(name, tc.table)}, tc.args...)
			var stdout, stderr bytes.Buffer
			if code := Main(context.Background(), args, nil, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, stderr.String())
			}
			if tc.code != 0 {
				if !strings.Contains(stderr.String(), tc.stderr) {
					t.Fatalf("stderr %q, want %q", stderr.String(), tc.stderr)
				}
				return
			}
			if got := readString(filepath.Join(dir, name+".out")); got != "from-file\n" {
				t.Fatalf("rendered %q, want the service the file's account sees", got)
			}
		})
	}
}

// A file's [wait] with a min and no max waits at most four times min, as
// in a render config; without [wait] the default applies.
func TestTemplateConfigWait(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ wait, min, max string }{
		{"[wait]\nmin = \"5s\"\n", "5s", "20s"},
		{"", "100ms", "2s"},
	} {
		p := filepath.Join(dir, "render.toml")
		body := tc.wait + "[[template]]\nsource = \"a.tmpl\"\ndestination = \"a.out\"\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := loadTemplateConfig(p)
		if err == nil {
			err = c.Config.Normalize()
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.wait, err)
		}
		if got := time.Duration(c.Wait.Min).String() + ":" + time.Duration(c.Wait.Max).String(); got != tc.min+":"+tc.max {
			t.Errorf("%q: wait %s, want %s:%s", tc.wait, got, tc.min, tc.max)
		}
	}
}

// A --wait that is not MIN:MAX is a usage error that gives the form, before
// the registry is reached; a good one sets the wait.
func TestTemplateWaitFlag(t *testing.T) {
	for _, tc := range []struct{ wait, want string }{
		{"5", `--wait "5": give MIN:MAX, two durations such as 100ms:2s`},
		{"1s:x", `--wait "1s:x": give MIN:MAX`},
		{"2s:1s", `--wait "2s:1s": MAX (1s) is less than MIN (2s)`},
	} {
		var stderr bytes.Buffer
		args := []string{"template", "--once", "--wait", tc.wait, "--template", "a.tmpl:" + filepath.Join(t.TempDir(), "a.out"), "--url", "http://127.0.0.1:1/v1.0"}
		code := Main(context.Background(), args, nil, io.Discard, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "Run 'svcreg template --help' for usage.") {
			t.Errorf("--wait %s: exit %d, stderr %q; want a usage error saying %q", tc.wait, code, stderr.String(), tc.want)
		}
	}
	for _, tc := range []struct {
		wait     string
		min, max time.Duration
	}{
		{"10ms:1s", 10 * time.Millisecond, time.Second},
		{"1s:0s", time.Second, 4 * time.Second},        // MAX 0: four times MIN, as [wait]'s max
		{"250ms", 250 * time.Millisecond, time.Second}, // MIN alone: four times MIN, as [wait]'s min alone
		{"0s:0s", 0, 0},
	} {
		f := templateFlags{templates: stringList{"a.tmpl:a.out"}, wait: tc.wait}
		c, err := f.loadConfig(flag.NewFlagSet("template", flag.ContinueOnError))
		if err != nil || c.Wait.Min.D() != tc.min || c.Wait.Max.D() != tc.max {
			t.Errorf("--wait %s: wait %s:%s, %v; want %s:%s", tc.wait, c.Wait.Min.D(), c.Wait.Max.D(), err, tc.min, tc.max)
		}
	}
}

// A --config whose [registry] holds a credential and that every local
// user can read is warned of; one readable by its owner only is not, nor
// one that holds no credential.
func TestTemplateWarnsOfAConfigWithACredentialOthersCanRead(t *testing.T) {
	t.Parallel()
	dir := testfs.SearchableTempDir(t)
	writeFile(t, filepath.Join(dir, "t.tmpl"), "x\n")
	const warning = "--config file can be read by every local user"
	for _, tc := range []struct {
		name, registry string
		mode           os.FileMode
		warned         bool
	}{
		{"an API key, 0644", "api_key = \"k\"\n", 0o644, true},
		{"a token, 0644", "token = \"t\"\n", 0o644, true},
		{"an API key, 0600", "api_key = \"k\"\n", 0o600, false},
		{"no credential, 0644", "", 0o644, false},
	} {
		config := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".toml")
		writeFile(t, config, "[registry]\nurl = \"http://127.0.0.1:9/v1.0\"\nusername = \"u\"\n"+tc.registry+
			"[[template]]\nsource = \"t.tmpl\"\ndestination = \""+filepath.Join(dir, "out")+"\"\n")
		if err := os.Chmod(config, tc.mode); err != nil {
			t.Fatal(err)
		}
		// --exec with --once is refused after the config is read.
		code, _, stderr := runSvcreg(t, "template", "--config", config, "--exec", "true", "--once")
		if code != exitUsage || strings.Contains(stderr, warning) != tc.warned {
			t.Errorf("%s: exit %d, warned %t (want %t):\n%s", tc.name, code, strings.Contains(stderr, warning), tc.warned, stderr)
		}
	}
}
