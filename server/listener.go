package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Serve serves the API on ln with hs until hs is shut down, as svcreg
// server runs it in production: through the server's Listener (so waiting
// long-polls park, and their answered connections wait for their next
// request without a goroutine, for hs's ReadHeaderTimeout or else its
// ReadTimeout) and with its connection hooks (the limits on idle
// connections). hs.Handler is set to the server if nil; hs's own ConnState
// and ConnContext hooks, if any, still run.
//
// For TLS, pass the tls.Listener (not the TCP one).
func (s *Server) Serve(hs *http.Server, ln net.Listener) error {
	if hs.Handler == nil {
		hs.Handler = s
	}
	s.conns.install(hs)
	// An answered long-poll's connection is kept by the poller until its
	// next request for as long as the http.Server would wait for the first
	// request of a new connection, which it is to the http.Server.
	keep := hs.ReadHeaderTimeout
	if keep <= 0 {
		keep = hs.ReadTimeout
	}
	s.poller.setKeep(keep)
	return hs.Serve(s.Listener(ln))
}

// Listener wraps the listener the http.Server serves, so that connections
// taken over by parked long-polls can be handed back to the http.Server once
// their answer is written, keeping the client's connection persistent.
// Accept errors never stop it: it retries with backoff, as net/http does.
//
// Serve uses it; call it directly only to serve with an http.Server that
// Serve cannot be given:
//
//	httpServer.Serve(api.Listener(ln))
func (s *Server) Listener(inner net.Listener) net.Listener {
	l := &listener{Listener: inner, log: s.log, logLimit: newLogLimit(1, 1, s.cfg.Clock), accepted: make(chan net.Conn), handedBack: make(chan struct{}, 1), done: make(chan struct{})}
	go l.acceptLoop()
	s.poller.setListener(l)
	return l
}

type listener struct {
	net.Listener
	log      interface{ Warn(string, ...any) }
	accepted chan net.Conn

	mu         sync.Mutex
	back       []net.Conn    // handed back, not yet accepted again
	handedBack chan struct{} // signals back is not empty

	done      chan struct{}
	closeOnce sync.Once

	logLimit *logLimit // of the accept failures' log lines
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
			// A line a second at most (logLimit): out of descriptors,
			// every accept between two clients leaving fails, and the
			// backoff starts again at each success.
			if more, ok := l.logLimit.allow(); ok {
				l.log.Warn("accept failed; retrying", "err", err, "retry_in", backoff, more)
			}
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
		if untold, ok := l.logLimit.untold(); ok {
			l.log.Warn("accept failures not logged", untold)
		}
		select {
		case l.accepted <- c:
		case <-l.done:
			c.Close()
			return
		}
	}
}

// Accept returns the next new or handed-back connection.
func (l *listener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if len(l.back) > 0 {
			c := l.back[0]
			l.back[0] = nil
			l.back = l.back[1:]
			l.mu.Unlock()
			return c, nil
		}
		l.mu.Unlock()
		select {
		case c := <-l.accepted:
			return c, nil
		case <-l.handedBack:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener and the connections handed back but not yet
// accepted; connections handed back later are closed.
func (l *listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.mu.Lock()
		back := l.back
		l.back = nil
		l.mu.Unlock()
		for _, c := range back {
			c.Close()
		}
	})
	return err
}

// handBack returns connections to the http.Server, which serves their next
// requests as if they had just been accepted; it never blocks. After Close
// it closes them, and reports false.
func (l *listener) handBack(conns ...net.Conn) (taken bool) {
	l.mu.Lock()
	if isClosed(l.done) {
		l.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	l.back = append(l.back, conns...)
	l.mu.Unlock()
	select {
	case l.handedBack <- struct{}{}:
	default:
	}
	return true
}

// prefixConn is a connection whose first bytes were already read from it
// (a pipelined request buffered while a long-poll was parked).
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// NetConn is the connection under the buffered bytes.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

// withConn is a context carrying the connection's record.
func withConn(ctx context.Context, ci *connInfo) context.Context {
	return context.WithValue(ctx, connKey{}, ci)
}

type connKey struct{}

// connOf is the record of the connection a request came on, or nil.
func connOf(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connKey{}).(*connInfo)
	return ci
}
