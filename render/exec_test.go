package render

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "nginx -g 'daemon off;'", want: []string{"nginx", "-g", "daemon off;"}},
		{in: `haproxy  -W -f "/etc/haproxy/a b.cfg"`, want: []string{"haproxy", "-W", "-f", "/etc/haproxy/a b.cfg"}},
		{in: `sh -c "echo \"\$HOME\" \\ done"`, want: []string{"sh", "-c", `echo "$HOME" \ done`}},
		{in: `a\ b c''d ""`, want: []string{"a b", "cd", ""}},
		{in: "", want: nil},
		{in: "nginx; rm -rf /", err: "means something only to a shell"},
		{in: "nginx $OPTS", err: "means something only to a shell"},
		{in: "nginx > log", err: "means something only to a shell"},
		{in: "nginx 'daemon off;", err: "single quote is not closed"},
		{in: `nginx "x`, err: "double quote is not closed"},
		{in: `nginx \`, err: "ends with a backslash"},
	} {
		got, err := SplitCommand(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SplitCommand(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGHUP": syscall.SIGHUP, "usr2": syscall.SIGUSR2, " SIGUSR1 ": syscall.SIGUSR1} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "SIGNOPE", "SIGKILL", "TERM", "int", "SIGSTOP"} {
		if got, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %v; want an error", in, got)
		}
	}
}

func TestExecConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, toml, err string
		command         []string
	}{
		{name: "string", toml: "[exec]\ncommand = \"nginx -g 'daemon off;'\"\n[[template]]\ncontents = \"x\"\ndestination = \"out\"\nreload_signal = \"SIGHUP\"\n",
			command: []string{"nginx", "-g", "daemon off;"}},
		{name: "array", toml: "[exec]\ncommand = [\"haproxy\", \"-W\"]\n[[template]]\ncontents = \"x\"\ndestination = \"out\"\nreload_signal = \"USR2\"\n",
			command: []string{"haproxy", "-W"}},
		{name: "no exec", toml: "[[template]]\ncontents = \"x\"\ndestination = \"out\"\nreload_signal = \"SIGHUP\"\n", err: "needs a command to signal"},
		{name: "both", toml: "[exec]\ncommand = \"nginx\"\n[[template]]\ncontents = \"x\"\ndestination = \"out\"\nreload = \"true\"\nreload_signal = \"SIGHUP\"\n", err: "both reload and reload_signal"},
		{name: "stop signal", toml: "[exec]\ncommand = \"nginx\"\n[[template]]\ncontents = \"x\"\ndestination = \"out\"\nreload_signal = \"SIGTERM\"\n", err: "stops the command"},
		{name: "shell syntax", toml: "[exec]\ncommand = \"nginx | tee\"\n[[template]]\ncontents = \"x\"\ndestination = \"out\"\n", err: "means something only to a shell"},
		{name: "not a string", toml: "[exec]\ncommand = [\"nginx\", 1]\n[[template]]\ncontents = \"x\"\ndestination = \"out\"\n", err: "element 2 is not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".toml")
			os.WriteFile(path, []byte(tc.toml), 0o644)
			c, err := LoadConfig(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Exec.Command, tc.command) || c.Exec.GracePeriod.D() != DefaultGracePeriod {
				t.Fatalf("exec = %+v", c.Exec)
			}
			if _, err := NewSet(c); err != nil {
				t.Fatal(err)
			}
		})
	}
}
