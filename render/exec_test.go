package render

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// With --exec, a first install before the command has started signals
// nothing (the command reads the files when it starts): the log says so,
// not "reloaded", and no reload is counted.
func TestInstallBeforeTheCommandStartsIsNotAReload(t *testing.T) {
	dir := t.TempDir()
	command := CommandLine{"true"}
	set := execSet(t, command, TemplateConfig{Contents: "x\n", Destination: filepath.Join(dir, "out"), ReloadSignal: "SIGHUP"})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ex := &Exec{Command: command, Log: log}
	if err := ex.Prepare(); err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	reg := prometheus.NewRegistry()
	r := NewRenderer(log, NewMetrics(reg), nil)
	r.Child, r.Status = ex, NewStatus()
	res := r.Pass(context.Background(), set, snapshot())
	if len(res.Failures) != 0 || res.Installed != 1 {
		t.Fatalf("pass = %+v", res)
	}
	out := logs.String()
	if strings.Contains(out, "msg=reloaded") || !strings.Contains(out, `msg="not reloaded: the command has not started yet; it reads the installed files when it starts"`) {
		t.Errorf("the log does not say that nothing was reloaded:\n%s", out)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "svcreg_template_reloads_total" && len(mf.GetMetric()) > 0 {
			t.Errorf("a reload was counted: %v", mf.GetMetric())
		}
	}
	if rep := r.Health.Report(0); rep.Groups[set.Groups[0].Name].Reload != nil {
		t.Errorf("the reload step has a result: %+v", rep.Groups[set.Groups[0].Name].Reload)
	}
}

// SIGHUPs that come while a re-read waits for the render loop make one
// more re-read, not one each: a burst of them would otherwise queue as
// many goroutines, each reading the config and templates again.
func TestSIGHUPsWhileAReReadWaitsAreOne(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	release := make(chan struct{})
	e := &Exec{OnHUP: func() {
		calls.Add(1)
		<-release
	}}
	e.onHUP()
	for calls.Load() == 0 { // the first under way
		time.Sleep(time.Millisecond)
	}
	for range 10 {
		e.onHUP()
	}
	close(release)
	e.onHUP() // after the others: the one queued, or one more
	// Done once none is queued with none under way (it holds hupRun).
	for queued := true; queued; time.Sleep(time.Millisecond) {
		e.hupRun.Lock()
		queued = e.hupQueued.Load()
		e.hupRun.Unlock()
	}
	if n := calls.Load(); n < 2 || n > 3 {
		t.Errorf("%d re-reads for 12 SIGHUPs, 10 of them while one waited; want 2 or 3", n)
	}
}

// A pass that a stop cut short does not start the command: its change
// did not go through.
func TestStoppedPassDoesNotStartTheCommand(t *testing.T) {
	ex := &Exec{Command: CommandLine{"true"}}
	if err := ex.Prepare(); err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	ex.Passed(PassResult{Stopped: true})
	select {
	case <-ex.ready:
		t.Fatal("a stopped pass let the command start")
	default:
	}
	ex.Passed(PassResult{})
	select {
	case <-ex.ready:
	default:
		t.Fatal("a pass that went through did not let the command start")
	}
}

// A command that exits 0 by itself has most often put itself in the
// background (nginx without "daemon off;"): the log line says how to keep
// it in the foreground. Another status gets no such hint.
func TestCommandExitingZeroByItselfGetsAHint(t *testing.T) {
	for _, tc := range []struct {
		script string
		code   int
		hint   bool
	}{{"exit 0", 0, true}, {"exit 3", 3, false}} {
		var logs bytes.Buffer
		ex := &Exec{Command: CommandLine{"/bin/sh", "-c", tc.script}, Log: slog.New(slog.NewTextHandler(&logs, nil))}
		if err := ex.Prepare(); err != nil {
			t.Fatal(err)
		}
		ex.Passed(PassResult{})
		code := ex.Run(context.Background())
		ex.Close()
		if hint := strings.Contains(logs.String(), "must stay in the foreground"); code != tc.code || hint != tc.hint {
			t.Errorf("%s: exit %d, hint %v; want %d, %v\n%s", tc.script, code, hint, tc.code, tc.hint, logs.String())
		}
	}
}

// With StartWithout, a renderer that has not synced with the registry by
// then starts the command on the files a previous run installed, if every
// destination has one; without them, or once a pass has run (the
// registry answered), it waits for a pass without a failure as ever.
func TestStartWithoutRegistry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		installed bool
		pass      *PassResult // given before the wait ends
		starts    bool
		log       string
	}{
		{name: "installed", installed: true, starts: true, log: "starting the command on the files installed before"},
		{name: "not installed", log: "the command waits for the registry"},
		{name: "a pass failed", installed: true, pass: &PassResult{Failures: []Failure{{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "started")
			var logs bytes.Buffer
			ex := &Exec{Command: CommandLine{"/bin/sh", "-c", "touch " + marker + "; exit 7"},
				Log: slog.New(slog.NewTextHandler(&logs, nil)), StartWithout: 50 * time.Millisecond,
				Installed: func() bool { return tc.installed }}
			if err := ex.Prepare(); err != nil {
				t.Fatal(err)
			}
			defer ex.Close()
			if tc.pass != nil {
				ex.Passed(*tc.pass)
			}
			// Long enough for the start when it is due; the command
			// ends Run at once with its status.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			code := ex.Run(ctx)
			_, err := os.Stat(marker)
			if started := err == nil; started != tc.starts || tc.starts && code != 7 || !tc.starts && code != 0 {
				t.Errorf("started %v, exit %d; want started %v\n%s", started, code, tc.starts, logs.String())
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("the log does not say %q:\n%s", tc.log, logs.String())
			}
			if !tc.starts && strings.Contains(logs.String(), "starting the command") {
				t.Errorf("the log says the command starts:\n%s", logs.String())
			}
		})
	}
}
