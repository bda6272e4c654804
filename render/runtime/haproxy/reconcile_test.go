package haproxy

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/haproxytest"
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

	// Nothing answers: the caller knows it is not a failure of the state.
	none, err := New(runtime.Settings{Socket: filepath.Join(t.TempDir(), "none.sock")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.(runtime.Reconciler).Reconcile(context.Background(), []byte(v1)); !errors.Is(err, runtime.ErrUnreachable) {
		t.Errorf("Reconcile with nothing at the socket: %v, want ErrUnreachable", err)
	}
}
