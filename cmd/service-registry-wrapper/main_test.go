package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// execEnv makes the test binary run main instead of the tests: the tests
// run the real program as a child process.
const execEnv = "SERVICE_REGISTRY_WRAPPER_TEST_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		main()
	}
	testprog.ChildProcessTests()
	os.Exit(m.Run())
}

// run runs the program with args and returns its exit code and stderr.
func run(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// Help asked for is the program's output: on stdout, once, exit 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "--help")
	cmd.Env = append(os.Environ(), execEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	if !strings.Contains(string(out), "service-registry-wrapper --id=ID [--tags=a,b] [--metadata=k=v,...] [--interval=SECONDS] [--abort-on-failure]") {
		t.Errorf("--help: usage on stdout:\n%s", out)
	}
	if n := strings.Count(string(out), "Usage:"); n != 1 {
		t.Errorf("--help prints the usage %d times:\n%s", n, out)
	}
}

func TestWrapsACommand(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "wrapper", APIKey: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	env := []string{"SVCREG_URL=" + srv.APIURL, "SVCREG_USERNAME=wrapper", "SVCREG_API_KEY=dev"}
	// The command sees its service in the registry, through the wrapper's
	// own environment, and exits with 4.
	script := `[ "$SVCREG_SERVICE_ID" = db1 ] || exit 10; exit 4`
	code, stderr := run(t, env, "--id=db1", "--tags=db", "--interval=1", "sh", "-c", script)
	if code != 4 {
		t.Errorf("exit code %d, want the command's 4\n%s", code, stderr)
	}
	for _, want := range []string{"service registered", "service deregistered", "prog=service-registry-wrapper"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("logs lack %q:\n%s", want, stderr)
		}
	}
	if _, err := c.GetService(context.Background(), "db1"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("after the wrapper exited: %v, want the service deleted", err)
	}
}
