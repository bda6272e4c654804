package haproxy

import (
	"errors"
	"net/http"
	"net/netip"
	"testing"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/render/runtime"
)

// An installed server line the adapter could not read (a host name, a
// quote or '$' anywhere on it, its comment included) hides its settings:
// the new line may drop one of them ("backup", "send-proxy", "ssl"), which
// the runtime API would leave on the live server.
func TestPlanInstalledServerLineUnreadable(t *testing.T) {
	t.Parallel()
	head := "backend api\n    balance roundrobin\n    server a 127.0.0.1:8001\n"
	for _, old := range []string{
		"    server b localhost:8002 send-proxy backup\n",
		"    server b 127.0.0.1:8002 backup # the owner's box\n",
		"    server b 127.0.0.1:8002 ssl verify none sni str(x\\ y)\n",
		"    server b 127.0.0.1:8002 backup # costs $5\n",
	} {
		for _, next := range []string{"    server b 127.0.0.1:9002\n", "    server b 127.0.0.1:8002 weight 3\n"} {
			p, err := planOf(t, head+old, head+next)
			var nr *runtime.NeedsReload
			if !errors.As(err, &nr) {
				t.Errorf("%q -> %q: want a reload, got %v", old, next, p.Commands())
			}
		}
	}
}

// Against the real HAProxy: the backup server of an unreadable line that
// the new file makes a plain server takes requests once the change is
// applied, as it does after a reload of the file.
func TestApplyInstalledServerLineUnreadable(t *testing.T) {
	t.Parallel()
	a, b, b2 := newCounter(t, "a"), newCounter(t, "b"), newCounter(t, "b2")
	v1 := backendsFile(srvLine("a", a, ""), srvLine("b", b, " backup # the owner's box"))
	h := haproxytest.Start(t, v1, true)
	v2 := backendsFile(srvLine("a", a, ""), srvLine("b", b2, ""))
	ad, err := New(runtime.Settings{Socket: h.Socket})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ad.Plan([]byte(v1), []byte(v2))
	if err != nil {
		return // reloaded: HAProxy loads v2 as it is
	}
	if err := p.Apply(t.Context()); err != nil {
		return // failed: the renderer reloads
	}
	client := &http.Client{}
	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		seen[hit(t, client, h.URL())]++
	}
	if seen["b2"] == 0 {
		t.Fatalf("the file has b at b2's address as a plain server, but after the runtime change requests went to %v (b is still a backup server)", seen)
	}
}

// A server whose drain is under way comes back: the line it was loaded
// from, which the drain keeps, could not be read, so its live settings are
// unknown and the adapter does not make it ready again with them.
func TestScriptDrainedServerLineUnreadable(t *testing.T) {
	t.Parallel()
	installed := parseConfig([]byte("backend api\n    balance roundrobin\n    server b 127.0.0.1:8002 backup # the owner's box\n"))
	next := parseConfig([]byte("backend api\n    balance roundrobin\n    server b 127.0.0.1:8002\n"))
	cur := next.backend("api")
	live := map[string]liveServer{"b": {name: "b", addr: netip.MustParseAddr("127.0.0.1"), port: 8002, weight: 1, admin: adminForcedDrain}}
	pending := map[string]*drain{"api/b": {id: "api/b", server: installed.backend("api").server("b"), then: []string{"set server api/b state maint"}, del: true}}
	sc, err := script([]*section{cur}, knownIn(parseConfig([]byte("backend api\n    balance roundrobin\n"))), []map[string]liveServer{live}, pending)
	if err == nil {
		t.Fatalf("want an error, got commands %q", sc.cmds)
	}
}
