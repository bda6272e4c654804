// Package clientaddr keys a network client by its address, for the limits
// kept per client (failed logins, peer connection slots).
package clientaddr

import "net"

// Key is the key of the client at addr (host:port, or a bare host): its
// IP, or for IPv6 its /64, which one host usually holds whole; addr's host
// itself if that is no IP.
func Key(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}
