package server

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails every other Accept with EMFILE, as a server out of
// descriptors does while clients come and go.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	n     int
	conns chan net.Conn
}

func (f *flakyListener) Close() error   { return nil }
func (f *flakyListener) Addr() net.Addr { return &net.TCPAddr{} }

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	f.n++
	fail := f.n%2 == 1
	f.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	c, ok := <-f.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

type countingLog struct {
	mu        sync.Mutex
	lines     int
	notLogged int // the not_logged counts the lines gave
}

func (c *countingLog) Warn(_ string, args ...any) {
	c.mu.Lock()
	c.lines++
	for _, a := range args {
		if attr, ok := a.(slog.Attr); ok && attr.Key == "not_logged" {
			c.notLogged += int(attr.Value.Int64())
		}
	}
	c.mu.Unlock()
}

// Accept failures between successes log a line a second at most: before,
// a line each, thousands a minute under a descriptor flood.
func TestAcceptFailuresLogBounded(t *testing.T) {
	t.Parallel()
	const accepts = 50
	f := &flakyListener{conns: make(chan net.Conn, accepts)}
	for range accepts {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		f.conns <- a
	}
	close(f.conns)
	log := &countingLog{}
	var mu sync.Mutex
	stand := time.Now()
	l := &listener{Listener: f, log: log, accepted: make(chan net.Conn), handedBack: make(chan struct{}, 1), done: make(chan struct{}),
		logLimit: newLogLimit(1, 1, func() time.Time { mu.Lock(); defer mu.Unlock(); return stand })}
	go l.acceptLoop()
	for i := range accepts {
		if i == accepts-1 {
			// A second on: the next success tells how many failures
			// were not logged.
			mu.Lock()
			stand = stand.Add(time.Second)
			mu.Unlock()
		}
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after the last connection: %v, want the listener closed", err)
	}
	if log.lines > 3 {
		t.Errorf("%d failures between successes logged %d lines on a clock that moved a second; want at most 3", accepts, log.lines)
	}
	if log.notLogged == 0 {
		t.Error("no line said how many failures were not logged")
	}
}
