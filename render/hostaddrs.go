package render

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// hostAddrs are the addresses of the renderer's own network interfaces,
// read again at most every hostAddrsTTL: a service registered at one of
// them points the load balancer, which runs beside the renderer, at its
// own host, as a loopback address does.
var hostAddrs = &localAddrs{read: interfaceAddrs}

// hostAddrsTTL is how long the interfaces' addresses read are used.
const hostAddrsTTL = 5 * time.Second

// localAddrs caches the host's interface addresses.
type localAddrs struct {
	read func() ([]netip.Addr, error)

	mu    sync.Mutex
	at    time.Time
	addrs map[netip.Addr]bool
}

// current returns the host's interface addresses (unmapped), read again
// if the last read is hostAddrsTTL old; when they cannot be read, the
// addresses read last. The map is never changed once returned: a render
// takes it once, and looks addresses up without a lock.
func (l *localAddrs) current() map[netip.Addr]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); l.addrs == nil || now.Sub(l.at) >= hostAddrsTTL {
		if addrs, err := l.read(); err == nil || l.addrs == nil {
			m := make(map[netip.Addr]bool, len(addrs))
			for _, a := range addrs {
				m[a.Unmap()] = true
			}
			l.addrs = m
		}
		l.at = now
	}
	return l.addrs
}

// interfaceAddrs are the addresses of the host's network interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
