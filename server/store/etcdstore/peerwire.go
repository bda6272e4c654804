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
	"strconv"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

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
// A request's additional data says it is one; an answer's says it is one
// and holds the request's nonce, binding it to that request. Each end of a
// connection makes its nonces from a random prefix of its own and a count,
// so none repeats under the key. A frame that does not open is answered
// with a refusal in the clear (an all-zero nonce, then the reason) and the
// connection closed. A plain framed stream rather than HTTP: a copy goes
// with every heartbeat answered from memory, and HTTP's per-request work
// (headers, the client's connection goroutines) cost more than the copy.

const (
	nonceSize = chacha20poly1305.NonceSizeX
	// minFrame is the shortest frame: a nonce and an empty payload sealed.
	minFrame = nonceSize + chacha20poly1305.Overhead
	// maxFrame bounds a frame: a batch of 256 copies is about 100 kB,
	// with the longest service ids about 150 kB.
	maxFrame = 512 << 10
	// peerIdle is how long the peer keeps a connection with nothing on it
	// once a frame on it opened with the secret; before, its first
	// frame must arrive within peerFirst. A frame, once its length has
	// arrived, must arrive within copyTimeout.
	peerIdle  = 5 * time.Minute
	peerFirst = 5 * time.Second
	// maxPeerConns bounds the connections the peer serves at once: each
	// node keeps one to its peer, and nothing is read before the
	// frame opens but the frame itself.
	maxPeerConns = 256
)

var errFrameSize = errors.New("peer frame too large or too small")

// requestAD and answerAD are the additional data a request and (followed
// by its request's nonce) an answer are sealed with.
var (
	requestAD = []byte("svcreg heartbeat copies: request")
	answerAD  = []byte("svcreg heartbeat copies: answer")
)

func answerData(requestNonce []byte) []byte {
	return append(answerAD[:len(answerAD):len(answerAD)], requestNonce...)
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

func (ns *nonces) next() []byte {
	ns.n++
	b := make([]byte, 0, nonceSize)
	return binary.BigEndian.AppendUint64(append(b, ns.prefix[:]...), ns.n)
}

// refusalNonce marks a refusal sent in the clear.
var refusalNonce = make([]byte, nonceSize)

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

// readFrame reads one frame. started, if not nil, is called once its
// length has arrived (to set a deadline for the rest). The buffer grows
// with what arrives, so a length alone reserves no memory.
func readFrame(r *bufio.Reader, started func()) (nonce, body []byte, err error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, err
	}
	if started != nil {
		started()
	}
	size := binary.BigEndian.Uint32(n[:])
	if size < minFrame || size > maxFrame {
		return nil, nil, errFrameSize
	}
	buf, err := io.ReadAll(io.LimitReader(r, int64(size)))
	if err != nil {
		return nil, nil, err
	}
	if len(buf) != int(size) {
		return nil, nil, io.ErrUnexpectedEOF
	}
	return buf[:nonceSize], buf[nonceSize:], nil
}

// servePeers accepts peer connections until the store closes; past
// maxPeerConns at once, new ones are closed at once.
func (s *Store) servePeers(ln net.Listener) {
	backoff := 5 * time.Millisecond
	conns := make(chan struct{}, maxPeerConns)
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
		select {
		case conns <- struct{}{}:
		default:
			if now := time.Now(); now.After(warned) {
				s.log.Warn("too many peer connections; closing new ones", "max", maxPeerConns, "from", c.RemoteAddr().String())
				warned = now.Add(time.Minute)
			}
			c.Close()
			continue
		}
		s.wg.Go(func() {
			defer func() { <-conns }()
			s.servePeerConn(c)
		})
	}
}

// servePeerConn answers the batches of copies on one connection.
func (s *Store) servePeerConn(c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	ns := newNonces()
	idle := peerFirst
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		nonce, sealed, err := readFrame(r, func() { c.SetReadDeadline(time.Now().Add(copyTimeout)) })
		if err != nil {
			return
		}
		payload, err := s.peerAEAD.Open(nil, nonce, sealed, requestAD)
		if err != nil {
			s.metrics.copyRefusals.WithLabelValues("secret").Inc()
			c.SetWriteDeadline(time.Now().Add(copyTimeout))
			writeFrame(w, refusalNonce, []byte("not sealed with this registry's secret"))
			return
		}
		ans := s.takeCopies(payload)
		an := ns.next()
		c.SetWriteDeadline(time.Now().Add(copyTimeout))
		if writeFrame(w, an, s.peerAEAD.Seal(nil, an, ans.appendTo(nil), answerData(nonce))) != nil {
			return
		}
		idle = peerIdle
	}
}

// peerConn is one sender's connection to its peer.
type peerConn struct {
	to   peerInfo
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	used bool // a batch went over it before
	// nonces: this end's, for the requests it seals.
	nonces *nonces
}

func (pc *peerConn) close() {
	if pc.c != nil {
		pc.c.Close()
		*pc = peerConn{}
	}
}

// roundTrip sends one batch to target and returns its answer. A
// connection that was used before and fails is dialled again once: the
// peer may have closed it while it was idle. A dial error of that retry is
// not reported as one: the first attempt may have delivered the batch.
func (s *Store) roundTrip(pc *peerConn, target peerInfo, payload []byte) (copyAnswer, error) {
	a, err := s.tryRoundTrip(pc, target, payload)
	if err == nil {
		return a, nil
	}
	reused := pc.used
	pc.close()
	if !reused || s.ctx.Err() != nil {
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
		*pc = peerConn{to: target, c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c), nonces: newNonces()}
	}
	pc.c.SetDeadline(deadline)
	nonce := pc.nonces.next()
	if err := writeFrame(pc.w, nonce, s.peerAEAD.Seal(nil, nonce, payload, requestAD)); err != nil {
		return copyAnswer{}, err
	}
	an, sealed, err := readFrame(pc.r, nil)
	if err != nil {
		return copyAnswer{}, err
	}
	if bytes.Equal(an, refusalNonce) { // in the clear: say what it says, briefly
		reason := sealed[:min(len(sealed), 200)]
		return copyAnswer{}, fmt.Errorf("a refusal in the clear (unauthenticated), said to be from peer %s: %s", target.id, strconv.QuoteToASCII(string(reason)))
	}
	raw, err := s.peerAEAD.Open(nil, an, sealed, answerData(nonce))
	if err != nil {
		return copyAnswer{}, fmt.Errorf("peer %s: its answer does not open with this registry's secret", target.id)
	}
	var a copyAnswer
	switch {
	case a.decode(raw) != nil:
		return copyAnswer{}, fmt.Errorf("peer %s: undecodable answer", target.id)
	case a.Err != "":
		return copyAnswer{}, fmt.Errorf("peer %s refused the copies: %s", target.id, a.Err)
	}
	pc.used = true
	return a, nil
}
