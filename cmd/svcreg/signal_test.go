package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// stopBySignal runs the svcreg command line args as a child process, waits
// until its output holds ready, sends sig, and returns its exit code and
// output.
func stopBySignal(t *testing.T, sig syscall.Signal, ready string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd, out := startChild(t, env, args...)
	out.waitFor(t, ready)
	return stopChild(t, cmd, sig), out.String()
}

// startChild starts the svcreg command line args as a child process, with
// env added to the environment, and returns it and its output; it is
// killed when the test ends if still running.
func startChild(t *testing.T, env []string, args ...string) (*exec.Cmd, *output) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), execEnv+"=1"), env...)
	out := newOutput()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, out
}

// stopChild sends cmd sig and returns its exit code once it has exited
// (killed if it has not within 30 s).
func stopChild(t *testing.T, cmd *exec.Cmd, sig syscall.Signal) int {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	stuck := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer stuck.Stop()
	cmd.Wait()
	return cmd.ProcessState.ExitCode()
}

// A graceful stop by SIGTERM (systemd's stop) or SIGINT (Ctrl-C) is a
// success, exit status 0, for every long-running command; never a panic.
// The signal comes right after the command says it has started.
func TestLongRunningCommandsStopBySignal(t *testing.T) {
	t.Parallel()
	registry := startServerProcess(t, "--data-dir", t.TempDir())
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "in.tmpl")
	if err := os.WriteFile(tmpl, []byte("{{ range services }}{{ .ID }}\n{{ end }}"), 0o644); err != nil {
		t.Fatal(err)
	}
	clientEnv := []string{"SVCREG_URL=" + registry.url + "/v1.0", "SVCREG_AUTH_URL=" + registry.url + "/v2.0",
		"SVCREG_USERNAME=signals", "SVCREG_API_KEY=dev", "SVCREG_TOKEN=", "SVCREG_TENANT=", "SVCREG_PASSWORD=", "SVCREG_REGION="}
	cases := []struct {
		name  string
		ready string
		env   []string
		args  []string
	}{
		{"server", "svcreg server listening", nil,
			[]string{"server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "server-%s")}},
		{"template", "svcreg template started", clientEnv,
			[]string{"template", "--template", tmpl + ":" + filepath.Join(dir, "out-%s.conf")}},
		{"events-tail", "following the events after", clientEnv, []string{"events", "tail"}},
		{"demo", "rendering examples/nginx/upstreams.tmpl", nil, []string{"demo", "--step", "50ms"}},
		// The wrapper passes the signal on and exits with its command's
		// status: 0 for a command that stops cleanly on it (here svcreg
		// events tail, which needs the wrapper's credentials).
		{"wrap", "following the events after", clientEnv,
			[]string{"wrap", "--id=sig-wrap-%s", "--pass-credentials", "--", os.Args[0], "events", "tail"}},
	}
	for _, tc := range cases {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			t.Run(tc.name+"/"+sig.String(), func(t *testing.T) {
				t.Parallel()
				args := make([]string, len(tc.args))
				for i, a := range tc.args {
					args[i] = strings.ReplaceAll(a, "%s", strings.ReplaceAll(sig.String(), " ", "-"))
				}
				code, out := stopBySignal(t, sig, tc.ready, tc.env, args...)
				if code != 0 || strings.Contains(out, "panic") {
					t.Errorf("svcreg %s after %s: exit status %d, want 0; output:\n%s", tc.name, sig, code, out)
				}
			})
		}
	}
}

// A reload that waits (for the pass under way, up to a check's timeout)
// does not hold up the signals after it: a SIGTERM after a SIGHUP, or
// after more SIGHUPs than the signal channel holds, stops at once, and
// the SIGHUPs that came while one reload waited make one more reload, not
// one each.
func TestStopOrReloadStopsWhileAReloadWaits(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	var reloads atomic.Int32
	reload := func() {
		reloads.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	sigs := make(chan os.Signal, 4)
	stopped := make(chan error, 1)
	go func() { stopped <- stopOrReload(ctx, slog.New(slog.DiscardHandler), sigs, reload) }()
	sigs <- syscall.SIGHUP
	for deadline := time.Now().Add(30 * time.Second); reloads.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no reload after a SIGHUP")
		}
	}
	go func() {
		for range 6 {
			sigs <- syscall.SIGHUP
		}
		sigs <- syscall.SIGTERM
	}()
	select {
	case err := <-stopped:
		if !errors.Is(err, errStopped) {
			t.Fatalf("stopOrReload = %v, want errStopped", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("SIGTERM after SIGHUPs did not stop it while a reload waited")
	}
	if n := reloads.Load(); n != 1 {
		t.Errorf("%d reloads started while the first waited, want it alone", n)
	}
}

// A one-shot run (--once) that SIGTERM or SIGINT stops while its check
// runs exits with 128+N, as a process the signal ended, not with the
// check's failure (6): a deploy script tells a stop from a bad config.
// Nothing is installed.
func TestTemplateOnceStoppedBySignal(t *testing.T) {
	t.Parallel()
	registry := startServerProcess(t, "--data-dir", t.TempDir())
	clientEnv := []string{"SVCREG_URL=" + registry.url + "/v1.0", "SVCREG_AUTH_URL=" + registry.url + "/v2.0",
		"SVCREG_USERNAME=once-signals", "SVCREG_API_KEY=dev", "SVCREG_TOKEN=", "SVCREG_TENANT=", "SVCREG_PASSWORD=", "SVCREG_REGION="}
	for _, tc := range []struct {
		sig    syscall.Signal
		during string // the check or the reload
	}{{syscall.SIGTERM, "check"}, {syscall.SIGINT, "check"}, {syscall.SIGTERM, "reload"}, {syscall.SIGTERM, "splay"}} {
		sig := tc.sig
		t.Run(sig.String()+" during the "+tc.during, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			checking, dest := filepath.Join(dir, "checking"), filepath.Join(dir, "out.conf")
			config := filepath.Join(dir, "render.toml")
			toml := fmt.Sprintf("[[template]]\ncontents = \"x\\n\"\ndestination = %q\ncheck = \"touch %s; sleep 30\"\ncheck_timeout = \"60s\"\n", dest, checking)
			args := []string{"template", "--once", "--no-reload", "--config", config}
			if tc.during == "reload" {
				// The reload runs to its end, and the pass goes through:
				// exit 0, the file installed.
				toml = fmt.Sprintf("[[template]]\ncontents = \"x\\n\"\ndestination = %q\nreload = \"touch %s; sleep 1\"\n", dest, checking)
				args = []string{"template", "--once", "--config", config}
			}
			if tc.during == "splay" {
				// The splay (up to an hour) holds the check and the
				// install: stopped, nothing installed.
				toml = fmt.Sprintf("[[template]]\ncontents = \"x\\n\"\ndestination = %q\nreload = \"true\"\nsplay = \"1h\"\n", dest)
				args = []string{"template", "--once", "--log-level", "debug", "--config", config}
			}
			if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd, out := startChild(t, clientEnv, args...)
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(checking); err == nil || strings.Contains(out.String(), "splay before install and reload") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the check did not start; output:\n%s", out)
				}
			}
			code := stopChild(t, cmd, sig)
			if tc.during == "reload" {
				if code != 0 {
					t.Errorf("exit status %d, want 0; output:\n%s", code, out)
				}
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("the destination was not installed: %v", err)
				}
				return
			}
			if code != 128+int(sig) || !strings.Contains(out.String(), "stopped by") {
				t.Errorf("exit status %d, want %d, and why; output:\n%s", code, 128+int(sig), out)
			}
			if strings.Contains(out.String(), "level=ERROR") {
				t.Errorf("a stop logged as an error; output:\n%s", out)
			}
			if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the destination was installed: %v", err)
			}
		})
	}
}
