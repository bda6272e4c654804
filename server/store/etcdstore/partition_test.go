package etcdstore_test

import (
	"net/url"
	"testing"

	"github.com/svcreg/svcreg/internal/etcdtest"
)

// partition stands between a node and every etcd member: TCP proxies on
// loopback that pass traffic until cut, then drop every connection and
// refuse new ones until healed, as a network partition between the node
// and etcd would.
type partition struct {
	proxies []*etcdtest.Proxy
	// Endpoints are the members' client URLs through the proxies.
	Endpoints []string
}

func newPartition(t testing.TB, endpoints []string) *partition {
	t.Helper()
	p := &partition{}
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			t.Fatal(err)
		}
		px, err := etcdtest.NewProxy(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(px.Close)
		p.proxies = append(p.proxies, px)
		p.Endpoints = append(p.Endpoints, "http://"+px.Addr())
	}
	return p
}

// Cut drops every connection and refuses new ones.
func (p *partition) Cut() {
	for _, px := range p.proxies {
		px.Cut()
	}
}

// Heal lets connections through again.
func (p *partition) Heal() {
	for _, px := range p.proxies {
		px.Heal()
	}
}

// fromEtcd is how many bytes the members have sent the node.
func (p *partition) fromEtcd() int64 {
	var n int64
	for _, px := range p.proxies {
		n += px.FromTarget()
	}
	return n
}
