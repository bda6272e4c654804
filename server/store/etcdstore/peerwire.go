package etcdstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/svcreg/svcreg/internal/connslots"
	"github.com/svcreg/svcreg/internal/retry"
)

// The peer protocol: a node keeps one TCP connection to its peer (its copy
// sender's), and sends batches of copies over it one at a time; the peer
// answers each on the same connection. Each message is a frame: a 4-byte
// big-endian length of the rest, a 24-byte nonce, and the payload
// (copyBatch, copyAnswer; their encoding is in peercodec.go) sealed with
// XChaCha20-Poly1305 under the peer key, derived from the registry's
// secret: encrypted, because copies carry the services' heartbeat tokens,
// and authenticated, because a forged copy could time a live service out.
// A connection opens with a hello (a request with nothing in it), which the
// peer answers with a challenge, random bytes of the connection's own. A
// request's additional data says it is one and holds the challenge, so a
// request seen on the wire does not open on another connection, and an
// eavesdropper cannot send it again to take one of the peer's slots as a
// holder (connslots); an answer's says it is one and holds the request's
// nonce, binding it to that request. Each end of a connection makes its
// nonces from a random prefix of its own and a count, so none repeats
// under the key; the peer takes a request only if its nonce counts up
// from the frame before, so none is taken twice on its own connection. A frame that does not open is answered
// with a refusal in the clear (an all-zero nonce, then the reason) and the
// connection closed. A node of the version before, which sends no hello,
// is refused so: its heartbeats are written to etcd until it is upgraded.
// A plain framed stream rather than HTTP: a copy goes with every heartbeat
// answered from memory, and HTTP's per-request work (headers, the
// client's connection goroutines) cost more than the copy.

const (
	nonceSize = chacha20poly1305.NonceSizeX
	// minFrame is the shortest frame: a nonce and an empty payload sealed.
	minFrame = nonceSize + chacha20poly1305.Overhead
	// maxFrame bounds a frame: a batch of 256 copies is about 100 kB,
	// with the longest service ids about 150 kB.
	maxFrame = 512 << 10
	// peerIdle is how long the peer keeps a connection with nothing on it
	// once a request on it opened with the secret; before, a request must
	// arrive within peerFirst of the connection's start (a hello does not
	// give it longer). A frame, once its length has arrived, must arrive
	// within copyTimeout.
	peerIdle  = 5 * time.Minute
	peerFirst = 5 * time.Second
	// maxPeerConns bounds the connections the peer serves at once: each
	// node keeps one to its peer, and nothing is read before the
	// frame opens but the frame itself (connslots).
	maxPeerConns = 256
	// maxFirstFrame bounds a connection's first frame, which anyone who
	// reaches the port can send: a hello is minFrame; an earlier version's
	// first batch is told apart (reason "version") only if it is this small.
	maxFirstFrame = 4 << 10
	// maxFirstRequest bounds the first request after a hello, which
	// anyone who saw a hello on the wire can send (a hello opens again): a
	// holder opens a connection with an empty batch, and an earlier
	// version's first batch of up to some 40 copies fits. So connections
	// without a request opened hold at most maxPeerConns of it.
	maxFirstRequest = 16 << 10
)

var errFrameSize = errors.New("peer frame too large or too small")

// helloAD, requestAD (followed by the connection's challenge) and
// answerAD (followed by its request's nonce) are the additional data a
// hello, a request and an answer are sealed with.
var (
	helloAD   = []byte("svcreg heartbeat copies: hello")
	requestAD = []byte("svcreg heartbeat copies: request")
	answerAD  = []byte("svcreg heartbeat copies: answer")
)

// challengeSize is the size of a connection's challenge.
const challengeSize = 24

// requestData appends the additional data of a request on the connection
// with challenge to dst.
func requestData(dst, challenge []byte) []byte {
	return append(append(dst, requestAD...), challenge...)
}

// answerData appends the additional data of the answer to the request
// with requestNonce to dst.
func answerData(dst, requestNonce []byte) []byte {
	return append(append(dst, answerAD...), requestNonce...)
}

// nonces makes the nonces of one end of one connection.
type nonces struct {
	prefix [nonceSize - 8]byte
	n      uint64
}

func newNonces() *nonces {
	ns := new(nonces)
	rand.Read(ns.prefix[:])
	return ns
}

// next appends the next nonce to dst.
func (ns *nonces) next(dst []byte) []byte {
	ns.n++
	return binary.BigEndian.AppendUint64(append(dst, ns.prefix[:]...), ns.n)
}

// countsUp reports whether nonce comes after prev from the same end of a
// connection: the same prefix, a greater count.
func countsUp(prev, nonce []byte) bool {
	p := nonceSize - 8
	return bytes.Equal(prev[:p], nonce[:p]) && binary.BigEndian.Uint64(nonce[p:]) > binary.BigEndian.Uint64(prev[p:])
}

// refusalNonce marks a refusal sent in the clear.
var refusalNonce = make([]byte, nonceSize)

// refusedError is a refusal in the clear, said to be from a peer.
type refusedError struct{ peer, says string }

func (e *refusedError) Error() string {
	return fmt.Sprintf("a refusal in the clear (unauthenticated), said to be from peer %s: %s", e.peer, e.says)
}

// dialError is a connection to the peer that could not be made: nothing
// was sent. Any other failure may have happened after the peer took the
// batch.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// writeFrame writes one frame and flushes it.
func writeFrame(w *bufio.Writer, nonce, body []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(nonce)+len(body)))
	w.Write(n[:])
	w.Write(nonce)
	w.Write(body)
	return w.Flush()
}

// frameBuf is the memory one end of a connection reads its frames into,
// kept from one frame to the next: a copy goes with every heartbeat
// answered from memory, and a buffer a frame was most of the garbage the
// copies made.
type frameBuf struct {
	b   []byte
	max int // if not 0, the largest frame taken (below maxFrame)
}

// keptFrameBuf is the most a frameBuf keeps between frames; one that grew
// past it for a large batch is let go.
const keptFrameBuf = 64 << 10

// read reads one frame. started, if not nil, is called once its length
// has arrived (to set a deadline for the rest). The buffer grows with what
// arrives, so a length alone reserves no memory. nonce and body are valid
// until the next read.
func (f *frameBuf) read(r *bufio.Reader, started func()) (nonce, body []byte, err error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, err
	}
	if started != nil {
		started()
	}
	size := int(binary.BigEndian.Uint32(n[:]))
	if size < minFrame || size > maxFrame || f.max != 0 && size > f.max {
		return nil, nil, errFrameSize
	}
	buf := f.b[:0]
	for len(buf) < size {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grows by what arrived so far
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), size)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < size {
			f.b = buf
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
	}
	f.b = buf
	return buf[:nonceSize], buf[nonceSize:], nil
}

// done ends the use of the frame read last: a buffer that grew past
// keptFrameBuf for it is let go.
func (f *frameBuf) done() { f.b = kept(f.b, keptFrameBuf) }

// kept is s emptied for the next batch, or nil if it grew past max
// elements for a large one.
func kept[S ~[]E, E any](s S, max int) S {
	if cap(s) > max {
		return nil
	}
	return s[:0]
}

// servePeers accepts peer connections until the store closes; past
// maxPeerConns at once, a new one takes the slot of one that has not
// opened a frame with the secret yet (connslots: anyone who reaches the
// port can open those), or is closed at once if none.
func (s *Store) servePeers(ln net.Listener) {
	backoff := 5 * time.Millisecond
	slots := connslots.New(maxPeerConns)
	var warned time.Time // until when a full house goes unlogged
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("accept a peer connection", "err", err)
			if retry.Sleep(s.ctx, backoff) != nil {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		slot, ok := slots.Take(c)
		if !ok {
			if now := time.Now(); now.After(warned) {
				s.log.Warn("too many peer connections; closing new ones", "max", maxPeerConns, "from", c.RemoteAddr().String())
				warned = now.Add(time.Minute)
			}
			c.Close()
			continue
		}
		s.wg.Go(func() {
			opened := false
			defer func() { slots.Done(slot, opened) }()
			s.servePeerConn(c, func() bool { return slots.Proved(slot) }, func() bool {
				opened = slots.Opened(slot)
				return opened
			})
		})
	}
}

// servePeerConn answers the batches of copies on one connection; proved
// is called once its hello opened with the secret, and opened once its
// first request did, and the connection ends if either says false
// (another took its slot).
func (s *Store) servePeerConn(c net.Conn, proved, opened func() bool) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	ns := newNonces()
	// Kept from one batch to the next: the frame read, the batch decoded
	// from it, and the answer's nonce, additional data and sealed body.
	// Until a hello opened, only a hello is buffered: anyone can send the
	// first frame.
	var (
		in          = frameBuf{max: maxFirstFrame}
		batch       copyBatch
		an, ad, out []byte
	)
	// reqAD is the additional data of the connection's requests, once its
	// hello was answered with a challenge; last the nonce of the frame
	// before, which the next one's must count up from.
	var reqAD, last []byte
	started := func() { c.SetReadDeadline(time.Now().Add(copyTimeout)) }
	refuse := func(reason, says string) {
		s.metrics.copyRefusals.WithLabelValues(reason).Inc()
		c.SetWriteDeadline(time.Now().Add(copyTimeout))
		writeFrame(w, refusalNonce, []byte(says))
	}
	// Until a request opened, the connection must have one by firstBy,
	// hello or not; then it may idle for peerIdle between frames.
	firstBy, first := time.Now().Add(peerFirst), true
	for {
		if first {
			c.SetReadDeadline(firstBy)
		} else {
			c.SetReadDeadline(time.Now().Add(peerIdle))
		}
		nonce, sealed, err := in.read(r, started)
		if err == errFrameSize {
			switch {
			case reqAD == nil:
				refuse("secret", "not a hello sealed with this registry's secret")
			case first:
				// Most likely a holder of the release before the
				// bound, whose first batch is its first request.
				refuse("version", fmt.Sprintf("a first request of a size no node of this version sends (it opens with an empty one, at most %d bytes)", maxFirstRequest))
			}
			return
		}
		if err != nil {
			return
		}
		ad = answerData(ad[:0], nonce)
		if reqAD == nil {
			// A hello is an empty payload sealed; anything else is
			// opened once, in place, only to say why it is refused.
			if len(sealed) != chacha20poly1305.Overhead {
				if _, err := s.peerAEAD.Open(sealed[:0], nonce, sealed, requestAD); err == nil {
					refuse("version", "copies without a hello, from a node of an earlier version")
				} else {
					refuse("secret", "not sealed with this registry's secret")
				}
				return
			}
			if _, err := s.peerAEAD.Open(sealed[:0], nonce, sealed, helloAD); err != nil {
				refuse("secret", "not sealed with this registry's secret")
				return
			}
			// Answered, a hello proves little (one seen on the wire
			// opens again): the slot waits for a request. But its slot
			// goes after those of connections that sent nothing, which
			// anyone who reaches the port can open, from a holder's own
			// address too (another process on its host).
			if !proved() {
				return
			}
			challenge := make([]byte, challengeSize)
			rand.Read(challenge)
			reqAD = requestData(nil, challenge)
			in.max = maxFirstRequest
			last = append(last[:0], nonce...)
			an = ns.next(an[:0])
			out = s.peerAEAD.Seal(out[:0], an, challenge, ad)
			c.SetWriteDeadline(time.Now().Add(copyTimeout))
			if writeFrame(w, an, out) != nil {
				return
			}
			in.done()
			continue
		}
		payload, err := s.peerAEAD.Open(sealed[:0], nonce, sealed, reqAD)
		if err != nil {
			refuse("secret", "not sealed with this registry's secret for this connection")
			return
		}
		// A request sent again on its own connection (by one who can
		// write into it) opens: its nonce must count up.
		if !countsUp(last, nonce) {
			refuse("replay", "not the next request on this connection")
			return
		}
		last = append(last[:0], nonce...)
		if first && !opened() {
			return
		}
		first, in.max = false, 0
		ans := s.takeCopies(payload, &batch)
		an = ns.next(an[:0])
		out = ans.appendTo(out[:0])
		out = s.peerAEAD.Seal(out[:0], an, out, ad)
		c.SetWriteDeadline(time.Now().Add(copyTimeout))
		if writeFrame(w, an, out) != nil {
			return
		}
		in.done()
		out = kept(out, keptFrameBuf)
		batch.Items = kept(batch.Items, maxCopyBatch) // more than a holder sends
	}
}

// peerConn is one sender's connection to its peer, and the memory its
// round trips reuse.
type peerConn struct {
	to   peerInfo
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	used bool // a batch went over it before
	// nonces: this end's, for the requests it seals; reqAD the additional
	// data they are sealed with (holding the peer's challenge).
	nonces *nonces
	reqAD  []byte
	// Kept from one round trip to the next, over connections: a batch's
	// items, its encoding, the request's nonce and sealed body, the answer
	// read, its additional data and what it says.
	items      []copyItem
	payload    []byte
	nonce, out []byte
	in         frameBuf
	ad         []byte
	ans        copyAnswer
}

// reuse readies pc's memory for the next round trip: the copies it held
// let go, and what grew past keptFrameBuf for a large batch dropped.
func (pc *peerConn) reuse() {
	clear(pc.items)
	pc.items = pc.items[:0]
	pc.payload, pc.out = kept(pc.payload, keptFrameBuf), kept(pc.out, keptFrameBuf)
	pc.in.done()
}

// close closes the connection; the memory stays for the next one.
func (pc *peerConn) close() {
	if pc.c != nil {
		pc.c.Close()
		pc.to, pc.c, pc.r, pc.w, pc.used, pc.nonces, pc.reqAD = peerInfo{}, nil, nil, nil, false, nil, pc.reqAD[:0]
	}
}

// roundTrip sends one batch to target and returns its answer. A
// connection that was used before and fails is dialled again once: the
// peer may have closed it while it was idle. One that timed out is not: a
// peer that stopped answering would make each batch wait twice
// copyTimeout. A dial error of that retry is not reported as one: the
// first attempt may have delivered the batch.
func (s *Store) roundTrip(pc *peerConn, target peerInfo, payload []byte) (copyAnswer, error) {
	a, err := s.tryRoundTrip(pc, target, payload)
	if err == nil {
		return a, nil
	}
	reused := pc.used
	pc.close()
	if !reused || s.ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return copyAnswer{}, err
	}
	if a, err = s.tryRoundTrip(pc, target, payload); err != nil {
		pc.close()
		if de := (*dialError)(nil); errors.As(err, &de) {
			err = de.err
		}
	}
	return a, err
}

func (s *Store) tryRoundTrip(pc *peerConn, target peerInfo, payload []byte) (copyAnswer, error) {
	deadline := time.Now().Add(copyTimeout)
	if pc.c == nil || pc.to != target {
		pc.close()
		d := net.Dialer{Deadline: deadline}
		c, err := d.DialContext(s.ctx, "tcp", target.addr)
		if err != nil {
			return copyAnswer{}, &dialError{err}
		}
		pc.to, pc.c, pc.r, pc.w, pc.nonces = target, c, bufio.NewReader(c), bufio.NewWriter(c), newNonces()
		c.SetDeadline(deadline)
		// No copy was sent yet: a hello that fails is as a connection
		// that could not be made, unless the peer refused it (a node of
		// another version or secret): that one stays the peer, and the
		// holder goes on as for any refused copy (copyTo).
		if err := s.hello(pc); err != nil {
			if errors.As(err, new(*refusedError)) {
				return copyAnswer{}, err
			}
			return copyAnswer{}, &dialError{err}
		}
		if err := s.openWithEmptyBatch(pc); err != nil {
			return copyAnswer{}, err
		}
	} else {
		pc.c.SetDeadline(deadline)
	}
	raw, err := s.exchange(pc, payload, pc.reqAD)
	if err != nil {
		return copyAnswer{}, err
	}
	if err := pc.answer(raw); err != nil {
		return copyAnswer{}, err
	}
	pc.used = true
	return pc.ans, nil
}

// answer decodes a batch's answer into pc.ans: an error if it does not
// decode or refuses the batch.
func (pc *peerConn) answer(raw []byte) error {
	a := &pc.ans
	switch {
	case a.decode(raw) != nil:
		return fmt.Errorf("peer %s: undecodable answer", pc.to.id)
	case a.Err != "":
		return fmt.Errorf("peer %s refused the copies: %s", pc.to.id, a.Err)
	}
	return nil
}

// hello opens a new connection: it sends the peer a hello and keeps the
// challenge the peer answers with, which every request on the connection
// is sealed with.
func (s *Store) hello(pc *peerConn) error {
	challenge, err := s.exchange(pc, nil, helloAD)
	if err != nil {
		return err
	}
	if len(challenge) != challengeSize {
		return fmt.Errorf("peer %s: a challenge of %d bytes, not %d", pc.to.id, len(challenge), challengeSize)
	}
	pc.reqAD = requestData(pc.reqAD[:0], challenge)
	return nil
}

// openWithEmptyBatch sends a new connection's first request: a batch of
// no copies, which the peer bounds (maxFirstRequest) before its slot is
// kept, since a hello seen on the wire opens again. It carries nothing,
// so a connection that breaks here is as one that could not be made; a
// peer that refuses it (another lease, a node of another version) is as
// one that refused a batch: it stays the peer.
func (s *Store) openWithEmptyBatch(pc *peerConn) error {
	lease, _ := s.lease.get()
	b := copyBatch{From: s.nodeID, FromLease: int64(lease), To: pc.to.id, ToLease: pc.to.lease}
	// Not into pc.payload, which holds the batch to send next.
	raw, err := s.exchange(pc, b.appendTo(nil), pc.reqAD)
	if err != nil {
		if errors.As(err, new(*refusedError)) {
			return err
		}
		return &dialError{err}
	}
	return pc.answer(raw)
}

// exchange sends payload to pc's peer, sealed with the additional data
// reqAD, and returns the peer's answer, opened (valid until the next
// exchange).
func (s *Store) exchange(pc *peerConn, payload, reqAD []byte) ([]byte, error) {
	pc.nonce = pc.nonces.next(pc.nonce[:0])
	pc.out = s.peerAEAD.Seal(pc.out[:0], pc.nonce, payload, reqAD)
	if err := writeFrame(pc.w, pc.nonce, pc.out); err != nil {
		return nil, err
	}
	an, sealed, err := pc.in.read(pc.r, nil)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(an, refusalNonce) { // in the clear: say what it says, briefly
		reason := sealed[:min(len(sealed), 200)]
		return nil, &refusedError{pc.to.id, strconv.QuoteToASCII(string(reason))}
	}
	pc.ad = answerData(pc.ad[:0], pc.nonce)
	raw, err := s.peerAEAD.Open(sealed[:0], an, sealed, pc.ad)
	if err != nil {
		return nil, fmt.Errorf("peer %s: its answer does not open with this registry's secret", pc.to.id)
	}
	return raw, nil
}
