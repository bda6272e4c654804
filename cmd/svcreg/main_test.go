package main

import (
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/svcreg/svcreg/internal/testprog"
	// This binary links etcd anyway (the etcd store's end-to-end tests):
	// SVCREG_TEST_STORE=etcd runs its servers on the etcd store too.
	_ "github.com/svcreg/svcreg/internal/testserver/etcdserver"
)

// execEnv makes the test binary run the svcreg command line instead of the
// tests, so tests can run the real program as a child process (and kill it).
const execEnv = "SVCREG_TEST_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		os.Exit(svcregMain())
	}
	testprog.ChildProcessTests()
	// testscript.Main runs the tests, with the command "svcreg" (this
	// binary under that name) on the scripts' PATH.
	testscript.Main(m, map[string]func(){
		"svcreg": func() { os.Exit(svcregMain()) },
	})
}

func svcregMain() int {
	return Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}
