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
	var tm testscript.TestingM = m
	// svcreg template saves what it remembers in a state directory, by
	// default one of the machine's: the tests' renderers (this process
	// and the ones it starts) save in one of their own.
	if os.Getenv("STATE_DIRECTORY") == "" {
		dir, err := os.MkdirTemp("", "svcreg-test-state-")
		if err != nil {
			panic(err)
		}
		os.Setenv("STATE_DIRECTORY", dir)
		tm = removeAfter{m, dir}
	}
	// testscript.Main runs the tests, with the command "svcreg" (this
	// binary under that name) on the scripts' PATH.
	testscript.Main(tm, map[string]func(){
		"svcreg": func() { os.Exit(svcregMain()) },
	})
}

// removeAfter removes dir once the tests have run.
type removeAfter struct {
	*testing.M
	dir string
}

func (r removeAfter) Run() int {
	defer os.RemoveAll(r.dir)
	return r.M.Run()
}

func svcregMain() int {
	return Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}
