package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The runtime settings: the README's example is valid, and bad settings
// are refused with a message that says what to do.
func TestRuntimeSettings(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "### HAProxy without reloads")
	_, block, _ := strings.Cut(section, "```toml\n")
	block, _, _ = strings.Cut(block, "```")
	for _, tc := range []struct {
		name, toml, err string
	}{
		{"README", block, ""},
		{"unknown runtime", "runtime = \"nginx\"\nruntime_socket = \"/s\"\nreload = \"r\"", `runtime "nginx" is not one of: `}, // haproxy, and the tests' own
		{"no reload", "runtime = \"haproxy\"\nruntime_socket = \"/s\"", "needs a reload (a command or reload_signal)"},
		{"no socket", "runtime = \"haproxy\"\nreload = \"r\"", "runtime_socket is empty"},
		{"socket without runtime", "runtime_socket = \"/s\"", `need runtime = "haproxy"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.toml
			if tc.name != "README" {
				text = "[[template]]\nsource = \"a.tmpl\"\ndestination = \"/tmp/a.cfg\"\n" + text
			}
			path := filepath.Join(t.TempDir(), "render.toml")
			os.WriteFile(path, []byte(text), 0o644)
			_, err := LoadConfig(path)
			switch {
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("got %v, want an error saying %q", err, tc.err)
			}
		})
	}
}
