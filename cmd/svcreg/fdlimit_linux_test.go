package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	// Clients that send nothing (one answered is closed at once).
	defer openClients(t, "127.0.0.1:"+port, "", 100)()
	checkDescriptorsBound(t, pid, held, 16, 100)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(srv.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// svcreg template's --listen (status page, /healthz, /metrics) serves a
// bounded number of connections at once (statusConns): a client that
// opens many cannot take the descriptors the renderer needs for its
// files, commands and registry connections. Without keep-alives, clients
// that were answered hold none: a probe after them is answered at once;
// nor do clients that send nothing keep a probe out.
func TestTemplateListenHoldsFewDescriptors(t *testing.T) {
	t.Parallel()
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	out := filepath.Join(dir, "out.conf")
	config := filepath.Join(dir, "render.toml")
	writeFile(t, config, fmt.Sprintf("listen = \"127.0.0.1:%s\"\n[[template]]\ncontents = \"# {{ len services }}\\n\"\ndestination = %q\n", port, out))
	d := startDaemon(t, devEnv(srv.url), "--config", config)
	health := "http://127.0.0.1:" + port + "/healthz"
	eventuallyTrue(t, "the first render", func() bool { return fileExists(out) && strings.Contains(get(health), `"status"`) })
	pid := d.cmd.Process.Pid
	held := openDescriptors(t, pid)
	// A connection answered is closed (no keep-alive), so answered
	// clients, however many, hold no slot.
	for range 3 {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || !resp.Close {
			t.Fatalf("an answer %+v, %v; want one that closes the connection", resp, err)
		}
		c.Close()
	}
	// Clients that send no request: statusConns held at most, and a probe
	// takes the slot of one of them (connslots) rather than wait behind
	// them all in the kernel's queue.
	closeAll := openClients(t, "127.0.0.1:"+port, "", statusConns+100)
	checkDescriptorsBound(t, pid, held, statusConns, statusConns+100)
	eventuallyTrue(t, "/healthz answered past the silent clients", func() bool { return strings.Contains(get(health), `"status"`) })
	closeAll()
	eventuallyTrue(t, "/healthz answered again", func() bool { return strings.Contains(get(health), `"status"`) })
}

// openClients opens n connections to addr, each sending req, and returns
// what closes them.
func openClients(t *testing.T, addr, req string, n int) (closeAll func()) {
	t.Helper()
	var clients []net.Conn
	closeAll = func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			closeAll()
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(req)); err != nil {
			closeAll()
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	return closeAll
}

// checkDescriptorsBound checks that process pid, which held descriptors
// before n clients connected, serves about bound of them and holds no
// more than bound descriptors more (and two to spare).
func checkDescriptorsBound(t *testing.T, pid, held, bound, n int) {
	t.Helper()
	// About bound more: a connection of the test's own may have been
	// among those held.
	eventuallyTrue(t, "the connections served", func() bool { return openDescriptors(t, pid) >= held+bound-2 })
	time.Sleep(500 * time.Millisecond) // any more accepted would show by now
	if got := openDescriptors(t, pid); got > held+bound+2 {
		t.Errorf("%d descriptors with %d clients, %d before: want %d more at most", got, n, held, bound)
	}
}
