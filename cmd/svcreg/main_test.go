package main

import (
	"context"
	"os"
	"testing"
)

// execEnv makes the test binary run the svcreg command line instead of the
// tests, so tests can run the real program as a child process (and kill it).
const execEnv = "SVCREG_TEST_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		os.Exit(Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
