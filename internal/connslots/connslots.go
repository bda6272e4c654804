// Package connslots bounds the connections a server serves at once so
// that clients that connect and send nothing, however fast they come from
// one address, cannot keep the others out: past the bound, a new
// connection takes the slot of one that has not opened (sent a request,
// or a frame that opened with the secret) yet, the oldest of the client
// address with the most such, of equally busy ones the one waiting
// longest. A connection that proved it has the secret so far (Proved: a
// frame sealed with it, which may still be one seen on the wire) gives up
// its slot only once none is left that did not: a flood from a client's
// own address (another process on its host) takes one another's slots
// first. A connection that opened keeps its slot.
package connslots

import (
	"container/list"
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/svcreg/svcreg/internal/clientaddr"
)

// Slots are the connections served at once, at most max.
type Slots struct {
	max int

	mu  sync.Mutex
	n   int
	seq uint64
	// waiting are the slots of connections that have not opened, by
	// address, oldest first: [0] those that proved nothing, [1] those
	// that proved they have the secret so far (Proved).
	waiting [2]map[string]*list.List // of *Slot
	freed   chan struct{}            // signalled when a slot is given back
}

// New returns slots for max connections at once.
func New(max int) *Slots {
	return &Slots{max: max, waiting: [2]map[string]*list.List{{}, {}}, freed: make(chan struct{}, 1)}
}

// Slot is a connection's place.
type Slot struct {
	c    net.Conn
	addr string
	seq  uint64
	tier int           // the waiting it is in
	wait *list.Element // in waiting[tier][addr]; nil once opened, or taken
}

// Take gives c a slot, taking a waiting connection's (and closing that
// one) if they are all in use, or reports none is free: every connection
// served has opened.
func (p *Slots) Take(c net.Conn) (*Slot, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == p.max {
		old := p.victim()
		if old == nil {
			return nil, false
		}
		p.unwait(old)
		old.c.Close()
		p.n-- // its user leaves without giving the slot back
	}
	p.n++
	p.seq++
	slot := &Slot{c: c, addr: clientaddr.Key(c.RemoteAddr().String()), seq: p.seq}
	p.wait(slot, 0)
	return slot, true
}

// wait puts slot among the waiting connections of tier.
func (p *Slots) wait(slot *Slot, tier int) {
	l := p.waiting[tier][slot.addr]
	if l == nil {
		l = list.New()
		p.waiting[tier][slot.addr] = l
	}
	slot.tier, slot.wait = tier, l.PushBack(slot)
}

// victim is the connection whose slot a new one takes: of those that
// proved nothing, else of those that proved the secret so far, the oldest
// waiting one of the address with the most waiting, the longest waiting
// of those; nil if none waits.
func (p *Slots) victim() *Slot {
	for _, waiting := range p.waiting {
		var v *Slot
		most := 0
		for _, l := range waiting {
			oldest := l.Front().Value.(*Slot)
			if l.Len() > most || l.Len() == most && oldest.seq < v.seq {
				v, most = oldest, l.Len()
			}
		}
		if v != nil {
			return v
		}
	}
	return nil
}

// unwait takes slot out of the waiting connections.
func (p *Slots) unwait(slot *Slot) {
	l := p.waiting[slot.tier][slot.addr]
	l.Remove(slot.wait)
	slot.wait = nil
	if l.Len() == 0 {
		delete(p.waiting[slot.tier], slot.addr)
	}
}

// Proved marks slot's connection as one that proved it has the secret so
// far (a frame sealed with it, which may be one seen on the wire): its
// slot goes only once none that proved nothing is left. It reports false
// if the slot was taken meanwhile (the connection is closed).
func (p *Slots) Proved(slot *Slot) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slot.wait == nil {
		return false
	}
	if slot.tier == 0 {
		p.unwait(slot)
		p.wait(slot, 1)
	}
	return true
}

// Opened marks slot's connection as one that opened: it keeps its slot.
// It reports false if the slot was taken meanwhile (the connection is
// closed).
func (p *Slots) Opened(slot *Slot) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slot.wait == nil {
		return false
	}
	p.unwait(slot)
	return true
}

// Done gives slot back, unless it was taken for another connection;
// opened is what Opened said.
func (p *Slots) Done(slot *Slot, opened bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slot.wait != nil {
		p.unwait(slot)
	} else if !opened {
		return // taken: its slot went to the connection that took it
	}
	p.n--
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// Listener is a net.Listener of at most max connections at once, for an
// http.Server whose ConnContext is the Listener's and whose handler is
// wrapped by its Handler: a connection opens when a request of it reaches
// the handler. Past max, Accept gives a new connection the slot of one
// that has not (closing that one), or, with every one in a request,
// waits for one to end, the new one in hand and the others in the
// kernel's queue.
type Listener struct {
	net.Listener
	slots *Slots
	done  chan struct{}
	once  sync.Once
}

// Listen bounds ln to max connections at once.
func Listen(ln net.Listener, max int) *Listener {
	return &Listener{Listener: ln, slots: New(max), done: make(chan struct{})}
}

// Accept returns the next connection once it has a slot.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		if slot, ok := l.slots.Take(c); ok {
			return &conn{Conn: c, l: l, slot: slot}, nil
		}
		select {
		case <-l.slots.freed:
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener; an Accept waiting for a slot returns.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type connKey struct{}

// ConnContext is the http.Server's ConnContext: it keeps the connection
// for Handler.
func (l *Listener) ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Handler serves h, once it marked the request's connection as opened;
// a request whose connection lost its slot meanwhile is not served. A body
// the handler left unread is not waited for: the http.Server would read
// (to discard) up to 256 kB of it until its ReadTimeout, and a client
// that announced a body and sent none would hold its opened slot so. The
// connection then serves no further request.
func (l *Listener) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*conn); ok && c.l == l && !c.open() {
			return
		}
		h.ServeHTTP(w, r)
		if r.ContentLength != 0 {
			http.NewResponseController(w).SetReadDeadline(time.Now())
		}
	})
}

// conn is a connection with a slot, given back when it closes.
type conn struct {
	net.Conn
	l    *Listener
	slot *Slot

	mu     sync.Mutex
	opened bool
	closed bool
}

// open marks the connection as opened (once); false if it lost its slot.
func (c *conn) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opened && !c.closed {
		c.opened = c.l.slots.Opened(c.slot)
	}
	return c.opened
}

func (c *conn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		c.l.slots.Done(c.slot, c.opened)
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
