package connslots

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// slotConn is a connection that only has a client address and a close.
type slotConn struct {
	net.Conn
	from   string
	closed bool
}

func (c *slotConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(c.from), Port: 40000}
}

func (c *slotConn) Close() error { c.closed = true; return nil }

// Connections that have not opened a frame give up their slots by
// address: a flood from one address, however fast, takes only its own
// connections' slots, and a client connecting from another address while
// it goes on (its first frame not read yet) keeps its slot; among
// addresses as busy, the one waiting longest goes. An IPv6 address counts
// by its /64.
func TestSlotsByAddress(t *testing.T) {
	const max = 256
	p := New(max)
	take := func(from string) (*slotConn, *Slot) {
		c := &slotConn{from: from}
		slot, ok := p.Take(c)
		if !ok {
			t.Fatalf("no slot for a connection from %s", from)
		}
		return c, slot
	}
	var flood []*slotConn
	for range max {
		c, _ := take("192.0.2.66")
		flood = append(flood, c)
	}
	holder, hs := take("10.0.0.1")
	if !flood[0].closed {
		t.Error("the flood's oldest connection kept its slot")
	}
	for range 10 * max {
		take("192.0.2.66")
	}
	if holder.closed {
		t.Fatal("a client's waiting connection lost its slot to a flood from another address")
	}
	if !p.Opened(hs) {
		t.Fatal("the client's first request found its slot taken")
	}
	// Many addresses, one connection each: the one waiting longest goes.
	p = New(max)
	var each []*slotConn
	for i := range max {
		c, _ := take(fmt.Sprintf("2001:db8:%x::1", i))
		each = append(each, c)
	}
	take("2001:db8:0::2") // the /64 of the first: two waiting there
	if !each[0].closed || each[1].closed {
		t.Errorf("past the bound with one address waiting twice: first closed %v, second %v; want only the first", each[0].closed, each[1].closed)
	}
	take("2001:db8:ffff::1")
	if !each[1].closed {
		t.Error("among addresses waiting once each, the one waiting longest kept its slot")
	}
	if p.n != max {
		t.Errorf("%d slots in use, want %d", p.n, max)
	}
}

// serve serves h on a Listener of max connections at once, as
// addBoundedServer does; it returns the address.
func serve(t *testing.T, max int, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listen(ln, max)
	hs := &http.Server{Handler: l.Handler(h), ConnContext: l.ConnContext, ReadHeaderTimeout: time.Minute, ReadTimeout: time.Minute}
	hs.SetKeepAlivesEnabled(false)
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(l) }()
	t.Cleanup(func() { hs.Close(); <-done })
	return ln.Addr().String()
}

// Connections that send nothing cannot keep a request out, however many
// come (before, the 16 connections of svcreg template's status port and
// of --metrics-listen went to the first that connected, each for its
// header timeout, and the others waited in the kernel's queue: ten silent
// connections a second kept every scrape out); with every slot in a
// request, a new connection waits for one, and is served.
func TestListenerServesPastSilentConnections(t *testing.T) {
	t.Parallel()
	const max = 4
	entered, release := make(chan struct{}), make(chan struct{})
	addr := serve(t, max, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}))
	get := func(path string) error {
		c := &http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
			return fmt.Errorf("GET %s: %s %q", path, resp.Status, b)
		}
		return nil
	}
	var silent []net.Conn
	for range 10 * max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	if err := get("/"); err != nil {
		t.Fatalf("past %d silent connections: %v", len(silent), err)
	}
	// Every slot in a request: the next waits its turn and is served.
	blocked := make(chan error, max)
	for range max {
		go func() { blocked <- get("/block") }()
		<-entered // in the handler: its connection keeps its slot
	}
	next := make(chan error, 1)
	go func() { next <- get("/") }()
	close(release)
	for range max {
		if err := <-blocked; err != nil {
			t.Error(err)
		}
	}
	if err := <-next; err != nil {
		t.Errorf("the request past %d in requests: %v", max, err)
	}
}

// A client that announces a body and sends none is answered (the handler
// reads no body) and its slot given back at once: the http.Server does
// not wait out its ReadTimeout to discard the body, holding an opened
// slot no new connection can take.
func TestListenerWaitsForNoUnreadBody(t *testing.T) {
	t.Parallel()
	const max = 4
	addr := serve(t, max, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for range 2 * max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("a request whose body never comes: %v, %v", resp, err)
		}
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("after %d requests whose bodies never came: %v", 2*max, err)
	}
	resp.Body.Close()
}

// A connection that proved the secret so far gives up its slot only once
// none that proved nothing waits, however many of those come from its own
// address; among the proved, the same order holds.
func TestSlotsProvedGoLast(t *testing.T) {
	const max = 4
	p := New(max)
	holder := &slotConn{from: "192.0.2.1"}
	hs, _ := p.Take(holder)
	if !p.Proved(hs) {
		t.Fatal("a waiting slot could not be marked proved")
	}
	for i := range 3 * max {
		if _, ok := p.Take(&slotConn{from: "192.0.2.1"}); !ok {
			t.Fatalf("no slot for flood connection %d", i)
		}
		if holder.closed {
			t.Fatalf("the proved connection lost its slot to flood connection %d from its address", i)
		}
	}
	// With every other slot proved too, the oldest proved one goes.
	var proved []*slotConn
	for range max - 1 {
		c := &slotConn{from: "192.0.2.9"}
		s, _ := p.Take(c)
		p.Proved(s)
		proved = append(proved, c)
	}
	if holder.closed {
		t.Fatal("a proved connection went while others had proved nothing")
	}
	if _, ok := p.Take(&slotConn{from: "192.0.2.5"}); !ok || holder.closed || !proved[0].closed {
		t.Fatalf("with every slot proved: holder closed %v, oldest of the busiest address closed %v", holder.closed, proved[0].closed)
	}
	if p.Proved(hs) != true || p.Opened(hs) != true {
		t.Fatal("the proved connection could not open")
	}
}
