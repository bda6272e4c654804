package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A registry served with --users is not served with --dev afterwards (a
// --dev user would take a tenant of the users file), nor one served with
// --dev with --users: the first mode is recorded with the data, and a
// server in the other refuses to start, saying why.
func TestServerKeepsItsAuthMode(t *testing.T) {
	t.Parallel()
	users := filepath.Join(t.TempDir(), "users.toml")
	writeFile(t, users, "[[user]]\nname = \"alice\"\ntenant = \"7777\"\napi_key = \"alice-key\"\n")
	// A server that starts serves until the context ends: refused, it
	// exits at once.
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"server", "--listen", "127.0.0.1:0"}, args...)...)
		cmd.Env = append(os.Environ(), execEnv+"=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		first, then []string
		want        string
	}{
		{[]string{"--users", users}, []string{"--dev"}, "was served with --users: --dev would let anyone in as a user of its tenants"},
		{[]string{"--dev"}, []string{"--users", users}, "was served with --dev, which let anyone in"},
	} {
		dir := t.TempDir()
		p := startUsersServer(t, append([]string{"--data-dir", dir}, tc.first...)...)
		p.cmd.Process.Kill()
		p.cmd.Wait()
		out, err := run(append([]string{"--data-dir", dir}, tc.then...)...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, tc.want) || !strings.Contains(out, fmt.Sprintf("--data-dir %q", dir)) {
			t.Errorf("%v after %v: %v\n%s\nwant refused, exit 2: %q", tc.then, tc.first, err, out, tc.want)
		}
	}
}

// A --dev start that fails on its flags (--listen, --metrics-listen,
// --tls-cert/--tls-key) before it serves leaves no registry behind: not
// marked as served with --dev, a --users server starts on the directory.
func TestFailedDevStartRecordsNoAuthMode(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := filepath.Join(t.TempDir(), "svcreg-data")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	free := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, args := range [][]string{
		{"--listen", "127.0.0.1"},
		{"--listen", taken.Addr().String()},
		{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1"},
		{"--listen", free, "--metrics-listen", free},
		{"--listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing},
	} {
		code, _, stderr := runSvcreg(t, append([]string{"server", "--dev", "--data-dir", dir}, args...)...)
		if code != exitError {
			t.Errorf("--dev %v: exit %d, want %d; stderr:\n%s", args, code, exitError, stderr)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("--dev %v failed but made its data directory: %v", args, err)
		}
	}
	users := filepath.Join(t.TempDir(), "users.toml")
	writeFile(t, users, "[[user]]\nname = \"alice\"\ntenant = \"7777\"\napi_key = \"alice-key\"\n")
	startUsersServer(t, "--data-dir", dir, "--users", users)
}
