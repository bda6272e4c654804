package freeport

import (
	"net"
	"strconv"
	"testing"
)

// A reserved port is below the ephemeral range, bindable, and not handed
// out again until released.
func TestReserve(t *testing.T) {
	seen := map[int]bool{}
	var releases []func()
	for range 600 { // 600 random picks of 22,000 ports collide unless the locks work
		port, release, err := Reserve()
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
		if port < lo || port >= lo+n {
			t.Fatalf("port %d outside %d-%d", port, lo, lo+n-1)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice while reserved", port)
		}
		seen[port] = true
	}
	port := Port(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("reserved port %d: %v", port, err)
	}
	ln.Close()
	for _, release := range releases {
		release()
	}
}
