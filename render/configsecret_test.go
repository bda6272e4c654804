package render

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/registry"
)

// A config file whose secret is not quoted does not parse; the error (in
// the log, and in /healthz, /readyz and the status page after a re-read)
// names the key and the line, never the value the parser read of it.
func TestReadConfigParseErrorHidesSecretValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ key, value, shown string }{
		{"password", "hunter", "hunter"},
		{"api_key", "trueSecret", "trueSecret"},
		{"token", "falsetto", "falsetto"},
		// The decoder matches keys in any case.
		{"Password", "hunter", "hunter"},
		{"API_KEY", "trueSecret", "trueSecret"},
		// An inline table fails at a key below the secret's.
		{"password", "{a = hunter}", "hunter"},
		{"token", "[{a = falsetto}]", "falsetto"},
		// A value that starts as a number reads as one; the error at
		// the rest of it comes after the key, at the table.
		{"password", "12hunter", "'h'"},
		{"api_key", "0x1fg", "'g'"},
		{"token", "2024-01-01Tz", "'z'"},
		// A quoted value with an escape TOML does not know.
		{"password", `"hun\qter"`, `\q`},
	} {
		dir := t.TempDir()
		path := writeFile(t, dir, "render.toml", "[registry]\n"+tc.key+" = "+tc.value+"\n")
		var file struct {
			Config
			Registry registry.Config `toml:"registry"`
		}
		err := ReadConfigInto(path, &file, &file.Config)
		if err == nil {
			t.Fatalf("%s: an unquoted value parsed", tc.key)
		}
		if strings.Contains(err.Error(), tc.shown) {
			t.Errorf("%s: the error shows the value: %v", tc.key, err)
		}
		if !strings.Contains(err.Error(), "not shown") || !strings.Contains(err.Error(), "single quotes") {
			t.Errorf("%s = %s: the error does not say why the value is not shown, or how to write it: %v", tc.key, tc.value, err)
		}
		if !strings.Contains(err.Error(), "registry."+tc.key) || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), filepath.Base(path)) {
			t.Errorf("%s: the error does not say where: %v", tc.key, err)
		}
	}
}

// Only a secret's line is hidden: the error of another value, even one
// that mentions a secret's name, keeps the parser's words.
func TestReadConfigParseErrorShowsOtherValues(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		"[[template]]\nreload = \"curl -H token=x\" y\n",
		"[wait]\nmin = 12hunter\n",
	} {
		path := writeFile(t, t.TempDir(), "render.toml", body)
		var file struct {
			Config
			Registry registry.Config `toml:"registry"`
		}
		err := ReadConfigInto(path, &file, &file.Config)
		if err == nil {
			t.Fatalf("%q parsed", body)
		}
		if strings.Contains(err.Error(), "not shown") || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: the error hides a value that is no secret: %v", body, err)
		}
	}
}
