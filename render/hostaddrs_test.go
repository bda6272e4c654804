package render

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
)

// A service registered at an address of the renderer's host reaches the
// load balancer's host as a loopback address does: a frontend bound to
// every address (the shipped haproxy.cfg's "bind :80") forwards to itself,
// each request coming back as many. It is refused unless allow_loopback.
func TestHostAddressIsRefusedAsLoopback(t *testing.T) {
	local := map[netip.Addr]bool{netip.MustParseAddr("192.0.2.7"): true, netip.MustParseAddr("2001:db8::7"): true, netip.MustParseAddr("2002:c633:6407::1"): true}
	for _, v := range []string{"192.0.2.7", "::ffff:192.0.2.7", "64:ff9b::c000:207", "2002:c000:207::1", "2001:db8::7", "[2001:db8::7]", "2002:c633:6407::1"} {
		_, err := parseAddress("ip", v, addrRules{local: local})
		if err == nil || !strings.Contains(err.Error(), "allow_loopback") {
			t.Errorf("host address %q without allow_loopback: %v; want it refused", v, err)
		}
		if _, err := parseAddress("ip", v, addrRules{local: local, loopback: true}); err != nil {
			t.Errorf("host address %q with allow_loopback refused: %v", v, err)
		}
	}
	for _, v := range []string{"192.0.2.8", "2001:db8::8"} {
		if _, err := parseAddress("ip", v, addrRules{local: local}); err != nil {
			t.Errorf("address %q, not the host's, refused: %v", v, err)
		}
	}

	// A render takes the host's own addresses: a service at one is left
	// out, the others stay.
	addrs, err := interfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var own netip.Addr
	for _, a := range addrs {
		if !a.IsLoopback() && !a.IsLinkLocalUnicast() && a.Is4() {
			own = a
			break
		}
	}
	if !own.IsValid() {
		testprog.SkipOrFail(t, "this host has no IPv4 address but loopback and link-local ones", "")
	}
	snap := snapshot(
		svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80"}),
		svc("self", []string{"www"}, map[string]string{"ip": own.String(), "port": "80"}),
	)
	set := newSet(t, TemplateConfig{Contents: endpointsTemplate, Destination: filepath.Join(t.TempDir(), "out")})
	out, refused, err := set.Groups[0].Templates[0].execute(context.Background(), snap)
	if err != nil || string(out) != "server 10.0.0.1:80; # web-1\n" {
		t.Errorf("got %q, %v; want the host's own address left out", out, err)
	}
	if len(refused) != 1 || refused[0].Service != "self" || !strings.Contains(refused[0].Reason, "this host") {
		t.Errorf("refused %+v; want self's address refused as the host's", refused)
	}
	set = newSet(t, TemplateConfig{Contents: endpointsTemplate, Destination: filepath.Join(t.TempDir(), "out"), AllowLoopback: true})
	if out, _, err := set.Groups[0].Templates[0].execute(context.Background(), snap); err != nil || !strings.Contains(string(out), own.String()) {
		t.Errorf("allow_loopback: got %q, %v; want the host's own address taken", out, err)
	}
}

// The interfaces are read again after hostAddrsTTL; a failed read keeps
// the addresses read before.
func TestLocalAddrsKeepsTheLastGoodRead(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.7")
	var fail bool
	l := &localAddrs{read: func() ([]netip.Addr, error) {
		if fail {
			return nil, errors.New("netlink")
		}
		return []netip.Addr{a}, nil
	}}
	has := func(ip netip.Addr) bool { return l.current()[ip.Unmap()] } // as checkIP looks it up
	if !has(a) || !has(netip.MustParseAddr("::ffff:192.0.2.7")) {
		t.Fatal("the address read is not the host's")
	}
	fail = true
	l.at = l.at.Add(-hostAddrsTTL)
	if !has(a) {
		t.Fatal("a failed read dropped the addresses read before")
	}
}
