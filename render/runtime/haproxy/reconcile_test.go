package haproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/internal/testnet"
	"github.com/svcreg/svcreg/render/runtime"
)

// Reconcile takes a live state that an earlier run left (a server added
// ahead of a file never installed, a drain cut short, a weight changed)
// back to the installed file's, through the runtime API, and leaves alone
// the servers of a backend it cannot change (a server-template's).
func TestReconcile(t *testing.T) {
	t.Parallel()
	a, b, x := newCounter(t, "a"), newCounter(t, "b"), newCounter(t, "x")
	tpl := "\nbackend tpl\n    balance roundrobin\n    server-template web 2 127.0.0.1:9\n"
	v1 := backendsFile(srvLine("a", a, ""), srvLine("b", b, " weight 2")) + tpl
	h := haproxytest.Start(t, v1, true)
	for _, cmd := range []string{
		"add server api/x 127.0.0.1:" + strconv.Itoa(x.port), "set server api/x state ready",
		"set server api/a state drain", "set weight api/b 7",
	} {
		if out, err := haproxytest.Command(h.Socket, cmd); err != nil || !accepted(cmd, strings.TrimSpace(out)) {
			t.Fatalf("%s: %q %v", cmd, out, err)
		}
	}
	ad, bg := drainingAdapter(t, h)
	sent, err := ad.(runtime.Reconciler).Reconcile(context.Background(), []byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"set server api/a state ready", "set weight api/b 2", "set server api/x state drain"}
	if !slices.Equal(sent, want) {
		t.Errorf("sent %q, want %q", sent, want)
	}
	bg.wait(t) // x drained and deleted
	cfg := parseConfig([]byte(v1))
	if err := ad.(*Adapter).verify(cfg.backend("api"), liveState(t, h)); err != nil {
		t.Errorf("after Reconcile: %v", err)
	}
	if out, err := haproxytest.Command(h.Socket, "show servers state tpl"); err != nil || !strings.Contains(out, " web1 ") || !strings.Contains(out, " web2 ") {
		t.Errorf("the server-template's servers are gone: %q %v", out, err)
	}

	// Now the live state is the file's: a read, nothing sent.
	before := ad.(*Adapter).cli.exchanges.Load()
	if sent, err := ad.(runtime.Reconciler).Reconcile(context.Background(), []byte(v1)); err != nil || len(sent) != 0 {
		t.Errorf("Reconcile of the file's live state: sent %q, %v", sent, err)
	}
	if n := ad.(*Adapter).cli.exchanges.Load() - before; n != 2 {
		// The read, then the (empty) script with its read-back.
		t.Errorf("%d round trips, want 2", n)
	}

	// A server the file has that is gone and cannot be added at runtime
	// (its address is a name): the caller must reload.
	v2 := v1 + "\nbackend names\n    balance roundrobin\n    server n localhost:" + strconv.Itoa(a.port) + "\n    server m 127.0.0.1:" + strconv.Itoa(a.port) + "\n"
	h2 := haproxytest.Start(t, v2, false)
	for _, cmd := range []string{"set server names/n state maint", "del server names/n"} {
		if out, err := haproxytest.Command(h2.Socket, cmd); err != nil || !accepted(cmd, strings.TrimSpace(out)) {
			t.Fatalf("%s: %q %v", cmd, out, err)
		}
	}
	ad2, _ := drainingAdapter(t, h2)
	var f *runtime.Failure
	if _, err := ad2.(runtime.Reconciler).Reconcile(context.Background(), []byte(v2)); !errors.As(err, &f) || errors.Is(err, runtime.ErrUnreachable) || !strings.Contains(err.Error(), "names/n") {
		t.Errorf("Reconcile with a server it cannot add: %v, want a failure naming names/n", err)
	}

	// Nothing answers (no socket, or one that nothing listens on, left
	// by a HAProxy killed): the caller knows it is not a failure of the
	// state.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	for _, socket := range []string{filepath.Join(t.TempDir(), "none.sock"), stale} {
		none, err := New(runtime.Settings{Socket: socket})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := none.(runtime.Reconciler).Reconcile(context.Background(), []byte(v1)); !errors.Is(err, runtime.ErrUnreachable) {
			t.Errorf("Reconcile with nothing at %s: %v, want ErrUnreachable", socket, err)
		}
	}
}

// A HAProxy that runs the file as loaded, or as its agents set it, has
// nothing to reconcile: servers without an IP address (a unix socket, a
// name not resolved: srv_addr "-"), IPv6 and IPv4-mapped addresses,
// tracked, backup, disabled and weight-0 servers, listen sections, and
// the weight an agent-check answer set. One of them failing, or sending a
// command, would reload or change HAProxy at every start.
func TestReconcileFindsNothingInALoadedFile(t *testing.T) {
	t.Parallel()
	a := newCounter(t, "a")
	p := strconv.Itoa(a.port)
	agent := testnet.Serve(t, func(c net.Conn) {
		io.WriteString(c, "50%\n")
		c.Close()
	})
	_, agentPort, _ := net.SplitHostPort(agent)
	for name, file := range map[string]string{
		"unix socket": backendsFile(srvLine("a", a, ""), "    server local unix@"+filepath.Join(t.TempDir(), "app.sock")+"\n"),
		"unresolved":  backendsFile(srvLine("a", a, ""), "    server n nosuchhost.invalid:80 init-addr none\n"),
		"variety": backendsFile(srvLine("a", a, " weight 0"), srvLine("d", a, " disabled check inter 1s"), srvLine("k", a, " backup weight 7"),
			"    server tr 127.0.0.1:"+p+" track api/d\n", "    server v6 [::1]:"+p+"\n", "    server m ::ffff:127.0.0.1:"+p+"\n", "    server h localhost:"+p+"\n") +
			"\nlisten st\n    stats enable\n\nlisten l2\n    server x 127.0.0.1:" + p + " check inter 100ms\n",
		"agent weight": backendsFile(srvLine("a", a, " weight 10 agent-check agent-port "+agentPort+" agent-inter 50ms"), srvLine("b", a, "")),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := haproxytest.Start(t, file, true)
			for deadline := time.Now().Add(10 * time.Second); name == "agent weight" && liveState(t, h)["a"].weight != 5; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the agent's answer did not set a's weight: %+v", liveState(t, h)["a"])
				}
			}
			ad, bg := drainingAdapter(t, h)
			if sent, err := ad.(runtime.Reconciler).Reconcile(context.Background(), []byte(file)); err != nil || len(sent) != 0 {
				t.Errorf("Reconcile of a HAProxy that loaded the file: sent %q, %v", sent, err)
			}
			if name == "agent weight" {
				// Nor does a change of the backend undo the agent's.
				more := strings.Replace(file, "    server b ", "    server c 127.0.0.1:"+p+"\n    server b ", 1)
				if err := planApply(t, ad, h, file, more); err != nil {
					t.Fatal(err)
				}
				if w := liveState(t, h)["a"].weight; w != 5 {
					t.Errorf("after a change, a's weight is %d, not the agent's 5", w)
				}
			}
			bg.wait(t)
		})
	}
}

// A change of a backend, in a file that holds a server-template backend,
// goes through the runtime API: the template's servers, live but not in
// the file, are neither deleted nor a reason to reload.
func TestApplyBesideServerTemplate(t *testing.T) {
	t.Parallel()
	a, b := newCounter(t, "a"), newCounter(t, "b")
	tpl := "\nbackend tpl\n    balance roundrobin\n    server-template web 2 127.0.0.1:9\n"
	v1 := backendsFile(srvLine("a", a, "")) + tpl
	v2 := backendsFile(srvLine("a", a, ""), srvLine("b", b, "")) + tpl
	h := haproxytest.Start(t, v1, true)
	ad, bg := drainingAdapter(t, h)
	if err := planApply(t, ad, h, v1, v2); err != nil {
		t.Fatalf("a server joining api: %v", err)
	}
	bg.wait(t)
	if out, err := haproxytest.Command(h.Socket, "show servers state tpl"); err != nil || !strings.Contains(out, " web1 ") || !strings.Contains(out, " web2 ") {
		t.Errorf("the server-template's servers are gone: %q %v", out, err)
	}
}
