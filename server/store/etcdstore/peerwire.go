package etcdstore

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
)

// The peer protocol: a node keeps a TCP connection to its peer per sender
// (copySenders), and sends batches of copies over it one at a time; the peer
// answers each on the same connection. Each message is a frame: a 4-byte
// big-endian length of the rest, a 32-byte HMAC-SHA256 with the peer key
// (a request's over its payload; an answer's over the request's MAC and
// its own payload), and the payload (copyBatch, copyAnswer; their encoding
// is in peercodec.go). A frame
// whose MAC does not match is answered with an error, unsigned, and the
// connection closed. A plain framed stream rather than HTTP: a copy goes
// with every heartbeat answered from memory, and HTTP's per-request work
// (headers, the client's connection goroutines) cost more than the copy.

const (
	macSize = sha256.Size
	// maxFrame bounds a frame: a batch of 256 copies is about 100 kB,
	// with the longest service ids about 150 kB.
	maxFrame = 512 << 10
	// peerIdle is how long the peer keeps a connection with nothing on it
	// once a frame on it was signed with the secret; before, its first
	// frame must arrive within peerFirst. A frame, once its length has
	// arrived, must arrive within copyTimeout.
	peerIdle  = 5 * time.Minute
	peerFirst = 5 * time.Second
	// maxPeerConns bounds the connections the peer serves at once: each
	// node keeps copySenders to its peer, and nothing is read before the
	// MAC is checked but the frame itself.
	maxPeerConns = 256
)

var errFrameSize = errors.New("peer frame too large or too small")

// dialError is a connection to the peer that could not be made: nothing
// was sent. Any other failure may have happened after the peer took the
// batch.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// writeFrame writes one frame and flushes it.
func writeFrame(w *bufio.Writer, mac, payload []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(mac)+len(payload)))
	w.Write(n[:])
	w.Write(mac)
	w.Write(payload)
	return w.Flush()
}

// readFrame reads one frame. started, if not nil, is called once its
// length has arrived (to set a deadline for the rest). The buffer grows
// with what arrives, so a length alone reserves no memory.
func readFrame(r *bufio.Reader, started func()) (mac, payload []byte, err error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, err
	}
	if started != nil {
		started()
	}
	size := binary.BigEndian.Uint32(n[:])
	if size < macSize || size > maxFrame {
		return nil, nil, errFrameSize
	}
	buf, err := io.ReadAll(io.LimitReader(r, int64(size)))
	if err != nil {
		return nil, nil, err
	}
	if len(buf) != int(size) {
		return nil, nil, io.ErrUnexpectedEOF
	}
	return buf[:macSize], buf[macSize:], nil
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
	idle := peerFirst
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		mac, payload, err := readFrame(r, func() { c.SetReadDeadline(time.Now().Add(copyTimeout)) })
		if err != nil {
			return
		}
		ans, signed := s.takeCopies(mac, payload)
		raw := ans.appendTo(nil)
		answerMAC := make([]byte, macSize)
		if signed {
			answerMAC = s.peerMAC(mac, raw)
		}
		c.SetWriteDeadline(time.Now().Add(copyTimeout))
		if writeFrame(w, answerMAC, raw) != nil || !signed {
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
		*pc = peerConn{to: target, c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	}
	pc.c.SetDeadline(deadline)
	mac := s.peerMAC(payload)
	if err := writeFrame(pc.w, mac, payload); err != nil {
		return copyAnswer{}, err
	}
	got, raw, err := readFrame(pc.r, nil)
	if err != nil {
		return copyAnswer{}, err
	}
	var a copyAnswer
	switch {
	case a.decode(raw) != nil:
		return copyAnswer{}, fmt.Errorf("peer %s: undecodable answer", target.id)
	case a.Err != "": // a refusal, signed or not (a bad MAC's is not)
		return copyAnswer{}, fmt.Errorf("peer %s refused the copies: %s", target.id, a.Err)
	case !hmac.Equal(got, s.peerMAC(mac, raw)):
		return copyAnswer{}, fmt.Errorf("peer %s: the answer's MAC does not match", target.id)
	}
	pc.used = true
	return a, nil
}
