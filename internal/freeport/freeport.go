// Package freeport reserves loopback TCP ports for tests whose programs
// bind them later, or bind them again after a restart (an etcd member, a
// server, HAProxy).
//
// A port the kernel hands out for ":0" is a poor choice there: it comes
// from the ephemeral range (32768 and up on Linux), from which the kernel
// also picks the local port of every outgoing connection, so while the
// program is down another test's connection can take the port, and the
// program's bind fails with "address already in use". A reserved port is
// taken from below that range instead, and locked (flock on a file per
// port, released with the reservation or when the process dies) against
// the user's other test processes, since two programs can share one port
// without an error (SO_REUSEPORT).
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// The ports handed out: below Linux's default ephemeral range, above the
// ports services commonly use.
const lo, n = 10000, 22000

// Reserve returns a loopback port that nothing listened on a moment ago,
// reserved until release is called.
func Reserve() (port int, release func(), err error) {
	dir := filepath.Join(os.TempDir(), "svcreg-test-ports-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, nil, err
	}
	start := rand.IntN(n)
	for i := range n {
		port := lo + (start+i)%n
		// The files stay: removing one could let two processes lock
		// different files of one name.
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return 0, nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			f.Close()
			continue
		}
		ln.Close()
		return port, func() { f.Close() }, nil
	}
	return 0, nil, errors.New("freeport: no free loopback port in 10000-31999")
}

// Port reserves a port for the test, until it ends.
func Port(t testing.TB) int {
	t.Helper()
	port, release, err := Reserve()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return port
}
