package server

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Listener wraps the listener the http.Server serves, so that connections
// taken over by parked long-polls can be handed back to the http.Server once
// their answer is written, keeping the client's connection persistent.
//
// Serve the API with it to let long-polls park without a goroutine and its
// buffers (a few hundred bytes each instead of tens of kilobytes):
//
//	ln = api.Listener(ln)
//	httpServer.Serve(ln)
//
// For TLS, wrap the tls.Listener (not the TCP one) and serve with Serve, not
// ServeTLS. Accept errors never stop it: it retries with backoff, as
// net/http does.
func (s *Server) Listener(inner net.Listener) net.Listener {
	l := &listener{Listener: inner, log: s.log, accepted: make(chan acceptResult), injected: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	s.lnMu.Lock()
	s.ln = l
	s.lnMu.Unlock()
	return l
}

type listener struct {
	net.Listener
	log       interface{ Warn(string, ...any) }
	accepted  chan acceptResult
	injected  chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

// Accept errors are retried after a backoff that doubles from
// minAcceptBackoff to maxAcceptBackoff, as net/http's Serve does: running
// out of descriptors (EMFILE) is common under load and passes once clients
// leave.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// acceptLoop accepts until the listener is closed.
func (l *listener) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || isClosed(l.done) {
				l.Close()
				return
			}
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			l.log.Warn("accept failed; retrying", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		select {
		case l.accepted <- acceptResult{c: c}:
		case <-l.done:
			c.Close()
			return
		}
	}
}

// Accept returns the next new or handed-back connection.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case r := <-l.accepted:
		return r.c, r.err
	case c := <-l.injected:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener; connections handed back later are closed.
func (l *listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

// handBack returns a connection to the http.Server, which serves its next
// request as if it had just been accepted. It reports false (and closes the
// connection) when the listener is closed.
func (l *listener) handBack(c net.Conn) bool {
	select {
	case l.injected <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

// prefixConn is a connection whose first bytes were already read from it
// (a pipelined request buffered while a long-poll was parked).
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }
