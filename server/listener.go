package server

import (
	"io"
	"net"
	"sync"
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
// ServeTLS.
func (s *Server) Listener(inner net.Listener) net.Listener {
	l := &listener{Listener: inner, accepted: make(chan acceptResult), injected: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	s.lnMu.Lock()
	s.ln = l
	s.lnMu.Unlock()
	return l
}

type listener struct {
	net.Listener
	accepted  chan acceptResult
	injected  chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

func (l *listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				return
			}
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
