package haproxy

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/render/runtime"
)

// HAProxy loads a "disabled" server with two admin flags: forced
// maintenance (0x01) and configured maintenance (0x04). "set server state
// ready" clears the first; the second stays, and is no maintenance
// (SRV_ADMF_MAINT is 0x23): the server takes requests.
func TestApplyEnableServerDisabledInTheFile(t *testing.T) {
	t.Parallel()
	a, c := newCounter(t, "a"), newCounter(t, "c")
	v1 := backendsFile(srvLine("a", a, ""), srvLine("c", c, " disabled"))
	h := haproxytest.Start(t, v1, true)
	worker := h.Worker(t)
	v2 := backendsFile(srvLine("a", a, ""), srvLine("c", c, ""))
	if err := apply(t, h, h.Socket, v1, v2); err != nil {
		t.Fatalf("enabling a server the installed file disables: %v", err)
	}
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		seen[hit(t, &http.Client{}, h.URL())]++
	}
	if seen["c"] == 0 {
		t.Fatalf("requests went to %v", seen)
	}
	if got := h.Worker(t); got != worker {
		t.Fatal("HAProxy was reloaded")
	}
}

// A server the file disables, made ready by hand, takes requests: the
// reconcile at start puts it back in maintenance.
func TestReconcileServerDisabledInTheFileMadeReady(t *testing.T) {
	t.Parallel()
	a, c := newCounter(t, "a"), newCounter(t, "c")
	v1 := backendsFile(srvLine("a", a, ""), srvLine("c", c, " disabled"))
	h := haproxytest.Start(t, v1, true)
	if out, err := haproxytest.Command(h.Socket, "set server api/c state ready"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("%q %v", out, err)
	}
	ad, err := New(runtime.Settings{Socket: h.Socket})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := ad.(runtime.Reconciler).Reconcile(context.Background(), []byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"set server api/c state maint"}; !slices.Equal(sent, want) {
		t.Errorf("sent %q, want %q", sent, want)
	}
	for i := 0; i < 10; i++ {
		if got := hit(t, &http.Client{}, h.URL()); got != "a" {
			t.Fatalf("the disabled server %s got a request", got)
		}
	}
}

// What Commands shows (--dry) takes a server the installed file disables
// for one HAProxy loaded in maintenance, as Apply finds it live: a change
// of another server sends nothing for it.
func TestCommandsServerDisabledInTheFile(t *testing.T) {
	t.Parallel()
	head := "backend api\n    balance roundrobin\n"
	old := head + "    server a 127.0.0.1:8001\n    server c 127.0.0.1:8003 disabled\n"
	next := head + "    server a 127.0.0.1:8001 weight 3\n    server c 127.0.0.1:8003 disabled\n"
	p, err := planOf(t, old, next)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Commands(), []string{"set weight api/a 3"}; !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
}
