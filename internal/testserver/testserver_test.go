package testserver

import (
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
)

// A stopped server's address refuses connections, as a registry that is
// down does, and no other listener can take it until Restart.
func TestStoppedServerKeepsItsAddress(t *testing.T) {
	s := Start(t, Options{Store: Bolt})
	s.Stop()
	addr := s.URL[len("http://"):]
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a stopped server: %v, want connection refused", err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatal("another listener took a stopped server's address")
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
