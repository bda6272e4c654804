package etcdstore_test

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// partition stands between a node and every etcd member: TCP proxies on
// loopback that pass traffic until cut, then drop every connection and
// refuse new ones until healed, as a network partition between the node
// and etcd would.
type partition struct {
	mu      sync.Mutex
	cut     bool
	conns   map[net.Conn]bool
	proxies []net.Listener
	// Endpoints are the members' client URLs through the proxies.
	Endpoints []string
}

func newPartition(t testing.TB, endpoints []string) *partition {
	t.Helper()
	p := &partition{conns: map[net.Conn]bool{}}
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.proxies = append(p.proxies, ln)
		p.Endpoints = append(p.Endpoints, "http://"+ln.Addr().String())
		go p.serve(ln, u.Host)
	}
	t.Cleanup(func() {
		for _, ln := range p.proxies {
			ln.Close()
		}
		p.Cut()
	})
	return p
}

func (p *partition) serve(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *partition) pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut drops every connection and refuses new ones.
func (p *partition) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Heal lets connections through again.
func (p *partition) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}
