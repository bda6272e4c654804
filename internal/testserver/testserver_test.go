package testserver

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
)

// A stopped server's address refuses connections, as a registry that is
// down does, and Restart takes it back. (That a listener on port 0 is not
// given the held port is the kernel's rule for SO_REUSEADDR sockets that
// do not listen; see holdPort.)
func TestStoppedServerKeepsItsAddress(t *testing.T) {
	s := Start(t, Options{Store: Bolt})
	s.Stop()
	addr := s.URL[len("http://"):]
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a stopped server: %v, want connection refused", err)
	}
	// No request was made, so no connection lingers in TIME_WAIT: only
	// the held socket makes a plain bind of the address fail.
	ap := netip.MustParseAddrPort(addr)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	syscall.Close(fd)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("bind a stopped server's address: %v, want it in use (held)", err)
	}
	s.Restart()
	resp, err := http.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after Restart: /healthz %s", resp.Status)
	}
}
