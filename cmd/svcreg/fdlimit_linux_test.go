package main

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// One accept error must not end accepting for good: the server, its
// descriptor limit lowered to a few above what it holds, gets more clients
// than it has descriptors (accept fails with EMFILE), and answers again
// once they leave.
func TestServerAcceptsAgainAfterRunningOutOfDescriptors(t *testing.T) {
	t.Parallel()
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	pid := srv.cmd.Process.Pid
	held := openDescriptors(t, pid)
	limit := uint64(held + 8)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatalf("lower the server's descriptor limit: %v", err)
	}
	addr := strings.TrimPrefix(srv.url, "http://")
	var clients []net.Conn
	for range 40 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	eventuallyTrue(t, "the server out of descriptors", func() bool { return openDescriptors(t, pid) >= int(limit) })
	for _, c := range clients {
		c.Close()
	}
	client := &http.Client{Timeout: 2 * time.Second}
	eventuallyTrue(t, "the server answers again", func() bool {
		resp, err := client.Get(srv.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// openDescriptors counts the descriptors process pid holds.
func openDescriptors(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// --metrics-listen serves a few connections at once (16): the others wait
// in the kernel's queue, and a client that opens many cannot take the
// descriptors the API and /healthz need.
func TestMetricsListenHoldsFewDescriptors(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(freePort(t))
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--metrics-listen", "127.0.0.1:"+port)
	pid := srv.cmd.Process.Pid
	held := openDescriptors(t, pid)
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range 100 {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	eventuallyTrue(t, "16 metrics connections served", func() bool { return openDescriptors(t, pid) >= held+16 })
	time.Sleep(500 * time.Millisecond) // any more accepted would show by now
	if n := openDescriptors(t, pid); n > held+16+2 {
		t.Errorf("%d descriptors with 100 metrics clients, %d before: want 16 more at most", n, held)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(srv.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
