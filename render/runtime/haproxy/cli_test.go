package haproxy

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/haproxytest"
)

// The CLI connection against the real HAProxy: the answers of a line of
// commands are told apart (a refused command among them too), on the
// stats socket and through the master CLI; a connection HAProxy closed is
// replaced; a reload of a daemon is seen after fresh.
func TestCLIAnswers(t *testing.T) {
	t.Parallel()
	h := haproxytest.Start(t, "backend api\n    balance roundrobin\n", true)
	for _, socket := range []string{h.Socket, "master:" + h.Master} {
		t.Run(socket, func(t *testing.T) {
			c, err := newCLI(socket, DefaultTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			name := "x" + strings.Repeat("y", len(socket)%7)
			ctx := context.Background()
			out, err := c.runAll(ctx, []string{
				"add server api/" + name + " 127.0.0.1:1",
				"del server api/nosuch",
				"set server api/" + name + " state ready",
				"show servers state api",
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 4 || out[0] != "New server registered." || out[1] != "No such server." || out[2] != "" {
				t.Fatalf("answers %q", out)
			}
			live, err := parseState(out[3])
			if err != nil || live[name].admin != 0 {
				t.Fatalf("show servers state: %v, %+v", err, live)
			}
			// HAProxy closed the kept connection (its CLI timeout does):
			// the next exchange connects again.
			c.conn.Close()
			if out, err := c.run(ctx, "set server api/"+name+" state maint"); err != nil || out != "" {
				t.Fatalf("after the connection closed: %q, %v", out, err)
			}
			if out, err := c.run(ctx, "del server api/"+name); err != nil || out != "Server deleted." {
				t.Fatalf("del server: %q, %v", out, err)
			}
			// Many commands take several lines.
			var cmds []string
			for range 400 {
				cmds = append(cmds, "show servers state api")
			}
			out, err = c.runAll(ctx, cmds)
			if err != nil || len(out) != len(cmds) || !strings.HasPrefix(out[399], "1\n# be_id") {
				t.Fatalf("%d answers, %v", len(out), err)
			}
		})
	}
}

// A command with a newline, ';' or '\' (from registry data) is never sent:
// it would be two commands.
func TestCLIRefusesSeparators(t *testing.T) {
	t.Parallel()
	c, _ := newCLI("/nonexistent.sock", time.Second)
	for _, cmd := range []string{"set server a/b state ready\nshutdown", "show info;shutdown", `show info\;x`} {
		if _, err := c.run(context.Background(), cmd); err == nil || !strings.Contains(err.Error(), "holds a newline") {
			t.Errorf("%q: got %v", cmd, err)
		}
	}
}

// A connection to a daemon's stats socket stays with the process that
// accepted it after a reload replaced that process; fresh (at every
// Apply) connects to the new one.
func TestCLIFreshAfterReload(t *testing.T) {
	t.Parallel()
	h := haproxytest.Start(t, "backend api\n    balance roundrobin\n", false)
	c, _ := newCLI(h.Socket, DefaultTimeout)
	defer c.close()
	pid := func() string {
		out, err := c.run(context.Background(), "show info")
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := strings.Cut(out, "Pid: ")
		p, _, _ = strings.Cut(p, "\n")
		return p
	}
	before := pid()
	if out, err := exec.Command("sh", "-c", h.ReloadCommand()).CombinedOutput(); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	c.fresh()
	if after := pid(); after == before {
		t.Fatalf("after the reload and fresh, the CLI still talks to %s", before)
	}
}
