package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/svcreg/svcreg/internal/testnet"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// TestScripts runs the command-line scripts in testdata/script against one
// in-process registry. Each script is its own user, so its own tenant:
// SVCREG_URL, SVCREG_USERNAME and SVCREG_API_KEY point svcreg at it, and
// ROOT_URL, API_URL, AUTH_URL, TOKEN and TENANT are there for scripts that set the
// connection up another way. SILENT_URL is a registry that takes
// connections and never answers.
//
// Besides testscript's commands, scripts have:
//
//	exits CODE PROG [ARGS...]   run PROG; its exit status must be CODE
//	feedmarker VAR              set $VAR to the feed's position now
//	mkservices PREFIX N         create services PREFIX0 … PREFIX(N-1)
//	keepalive ID TIMEOUT        create service ID and heartbeat it until the script ends
func TestScripts(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	silent := silentListener(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			user := filepath.Base(env.WorkDir) // "script-<name>"
			// Scripts do not inherit the environment: TestMain's GORACE.
			env.Setenv("GORACE", os.Getenv("GORACE"))
			env.Setenv("STATE_DIRECTORY", filepath.Join(env.WorkDir, ".state"))
			env.Setenv("SVCREG_URL", srv.APIURL)
			env.Setenv("SVCREG_USERNAME", user)
			env.Setenv("SVCREG_API_KEY", "dev")
			env.Setenv("ROOT_URL", srv.URL)
			env.Setenv("API_URL", srv.APIURL)
			env.Setenv("AUTH_URL", srv.AuthURL)
			env.Setenv("SILENT_URL", "http://"+silent+"/v1.0")
			c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: user, APIKey: "dev"})
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tok, err := c.Authenticate(ctx)
			if err != nil {
				return err
			}
			env.Setenv("TOKEN", tok.ID)
			env.Setenv("TENANT", tok.Tenant)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":      cmdExits,
			"feedmarker": cmdFeedMarker,
			"mkservices": cmdMkServices,
			"keepalive":  cmdKeepAlive,
		},
	})
}

// silentListener takes connections and never answers on them, until the
// test ends; it returns its address.
func silentListener(t *testing.T) string {
	return testnet.Serve(t, func(c net.Conn) { t.Cleanup(func() { c.Close() }) })
}

// cmdExits runs a program and checks its exit status; its output is then
// stdout and stderr, as for exec.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad CODE %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

// scriptClient is a client for the script's own account.
func scriptClient(ts *testscript.TestScript) *registry.Client {
	c, err := registry.New(registry.Config{URL: ts.Getenv("API_URL"), AuthURL: ts.Getenv("AUTH_URL"),
		Username: ts.Getenv("SVCREG_USERNAME"), APIKey: "dev"})
	ts.Check(err)
	ts.Defer(func() { c.Close() })
	return c
}

// cmdFeedMarker sets an environment variable to the X-Registry-Marker of
// a services list: events after it are those that happen from now on.
func cmdFeedMarker(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: feedmarker VAR")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := scriptClient(ts).ListServicesPage(ctx, registry.ServiceListOptions{Limit: 1})
	ts.Check(err)
	if page.FeedMarker == "" {
		ts.Fatalf("feedmarker: the services list carries no X-Registry-Marker")
	}
	ts.Setenv(args[0], page.FeedMarker)
}

// nameAndNumber reads the arguments of a script command that takes a name
// and a number (usage, if not), and returns them with a client of the
// script's account.
func nameAndNumber(ts *testscript.TestScript, neg bool, args []string, usage string) (string, int, *registry.Client) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: %s", usage)
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	return args[0], n, scriptClient(ts)
}

// cmdMkServices creates many services at once (faster than a process for
// each).
func cmdMkServices(ts *testscript.TestScript, neg bool, args []string) {
	prefix, n, c := nameAndNumber(ts, neg, args, "mkservices PREFIX N")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
	)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := c.CreateService(ctx, registry.Service{ID: fmt.Sprintf("%s%03d", prefix, i), HeartbeatTimeout: 120, Tags: []string{"bulk"}})
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	ts.Check(errors.Join(errs...))
}

// cmdKeepAlive creates a service and heartbeats it (a Heartbeater) until
// the script ends: a service a script reads throughout, which would
// otherwise time out in a script that a loaded machine makes longer than
// the timeout.
func cmdKeepAlive(ts *testscript.TestScript, neg bool, args []string) {
	id, timeout, c := nameAndNumber(ts, neg, args, "keepalive ID TIMEOUT")
	create, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token, err := c.CreateService(create, registry.Service{ID: id, HeartbeatTimeout: timeout})
	ts.Check(err)
	h := c.StartHeartbeat(context.Background(), id, token, timeout, registry.HeartbeatOptions{})
	ts.Defer(func() {
		h.Stop()
		if err := h.Err(); err != nil {
			ts.Logf("keepalive %s: heartbeats failed: %v", id, err) // the script's reads of it fail too
		}
	})
}
