// Package testnet holds test helpers for network fixtures: a listener
// that plays a party to a protocol (an agent, a peer, a relay).
package testnet

import (
	"net"
	"testing"
)

// Serve listens on a port of 127.0.0.1 and calls handle, in a goroutine
// of its own, with each connection accepted until the test ends (when the
// listener closes). handle closes the connection. It returns the
// listener's address.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}
