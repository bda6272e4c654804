package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// wrapProcess is `svcreg wrap` running as a child process: the wrapper
// owns its process's children and signals.
type wrapProcess struct {
	done   chan struct{} // closed when it has exited
	code   int
	stderr string // the file holding its stderr
}

// runWrapProcess runs `svcreg wrap args...`; env is added to the test's
// environment.
func runWrapProcess(t *testing.T, env []string, args ...string) *wrapProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"wrap"}, args...)...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	cmd.Env = append(cmd.Env, env...)
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &wrapProcess{done: make(chan struct{}), stderr: stderr.Name()}
	go func() {
		defer close(p.done)
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		// Still running (the test failed): SIGTERM, which the wrapper passes
		// on, so that the command does not outlive the test.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the wrapper to exit and returns its exit code.
func (p *wrapProcess) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(30 * time.Second):
		t.Fatal("svcreg wrap did not exit")
		return 0
	}
}

func (p *wrapProcess) logs() string {
	b, _ := os.ReadFile(p.stderr)
	return string(b)
}

func TestWrapRunsTheCommandAsAService(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "wrap", APIKey: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	env := []string{"SVCREG_URL=" + srv.APIURL, "SVCREG_USERNAME=wrap", "SVCREG_API_KEY=dev"}
	w := runWrapProcess(t, env, "--id=wrapped", "--tags=www", "--metadata=port=8080", "--interval=1", "--",
		"sh", "-c", `while [ ! -e "$1/stop" ]; do sleep 0.05; done; exit 3`, "command", dir)

	var s registry.Service
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if s, err = c.GetService(context.Background(), "wrapped"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service never appeared: %v\n%s", err, w.logs())
		}
	}
	if !reflect.DeepEqual(s.Tags, []string{"www"}) || !reflect.DeepEqual(s.Metadata, map[string]string{"port": "8080"}) || s.HeartbeatTimeout != 3 {
		t.Errorf("registered %+v, want tags [www], metadata port=8080, heartbeat_timeout 3", s)
	}
	if err := os.WriteFile(filepath.Join(dir, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := w.wait(t); code != 3 {
		t.Errorf("exit code %d, want the command's 3", code)
	}
	if _, err := c.GetService(context.Background(), "wrapped"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("after svcreg wrap exited: %v, want the service deleted", err)
	}
	if !strings.Contains(w.logs(), `prog="svcreg wrap"`) {
		t.Errorf("the logs do not name svcreg wrap:\n%s", w.logs())
	}
}

func TestWrapUsageError(t *testing.T) {
	t.Parallel()
	w := runWrapProcess(t, []string{"SVCREG_URL=http://127.0.0.1:1/v1.0"}, "--interval=1", "--", "true")
	if code := w.wait(t); code != exitUsage {
		t.Errorf("exit code %d, want %d", code, exitUsage)
	}
	for _, want := range []string{"svcreg wrap: --id is required", "Run 'svcreg wrap --help' for usage."} {
		if !strings.Contains(w.logs(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, w.logs())
		}
	}
}
