package etcdstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testnet"
)

// rawPeerConn is a connection to a peer made by hand, past its hello: a
// holder's end, for sending frames a holder would not.
type rawPeerConn struct {
	c      net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	ns     *nonces
	reqAD  []byte
	in     frameBuf
	sealer *Store
}

func dialPeer(t *testing.T, peer *Store) *rawPeerConn {
	t.Helper()
	rc := connectPeer(t, peer)
	rc.hello(t)
	// A holder's first request is an empty batch.
	raw, err := rc.send((&copyBatch{From: "a", FromLease: 1, To: peer.nodeID, ToLease: 2}).appendTo(nil), nil)
	var a copyAnswer
	if err != nil || a.decode(raw) != nil || a.Err != "" {
		t.Fatalf("an empty first request: %+v, %v", a, err)
	}
	return rc
}

// connectPeer makes a connection to peer that sent nothing yet.
func connectPeer(t *testing.T, peer *Store) *rawPeerConn {
	t.Helper()
	c, err := net.Dial("tcp", peer.peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawPeerConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c), ns: newNonces(), sealer: peer}
}

// hello sends a hello and keeps the challenge it is answered with.
func (rc *rawPeerConn) hello(t *testing.T) {
	t.Helper()
	challenge, err := rc.send(nil, helloAD)
	if err != nil || len(challenge) != challengeSize {
		t.Fatalf("hello: %x, %v", challenge, err)
	}
	rc.reqAD = requestData(nil, challenge)
}

// frame seals payload as the next request (or with ad, if not nil).
func (rc *rawPeerConn) frame(payload, ad []byte) []byte {
	if ad == nil {
		ad = rc.reqAD
	}
	nonce := rc.ns.next(nil)
	body := rc.sealer.peerAEAD.Seal(nil, nonce, payload, ad)
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeFrame(w, nonce, body)
	return b.Bytes()
}

// sendFrame writes a frame as it is and returns the answer, opened.
func (rc *rawPeerConn) sendFrame(frame []byte) ([]byte, error) {
	if _, err := rc.c.Write(frame); err != nil {
		return nil, err
	}
	an, sealed, err := rc.in.read(rc.r, nil)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(an, refusalNonce) {
		return nil, fmt.Errorf("refused: %s", sealed)
	}
	nonce := frame[4 : 4+nonceSize]
	return rc.sealer.peerAEAD.Open(nil, an, sealed, answerData(nil, nonce))
}

func (rc *rawPeerConn) send(payload, ad []byte) ([]byte, error) {
	return rc.sendFrame(rc.frame(payload, ad))
}

// A peer takes at most maxCopyBatch copies in one request, as many as a
// holder sends: a batch of more, which fits in a frame all the same, is
// refused whole, not taken in one hold of the copies' lock.
func TestPeerBatchBounded(t *testing.T) {
	peer := peerStore(t, "b", 2, testPeerKey)
	rc := dialPeer(t, peer)
	b := copyBatch{From: "a", FromLease: 1, To: "b", ToLease: 2}
	for i := range 10 * maxCopyBatch {
		b.Items = append(b.Items, copyItem{Tenant: "t", ID: fmt.Sprint("svc-", i), HBRev: 3, Stored: 9e18,
			State: hbRecord{Seq: 1, Deadline: 9e18, Holder: "a", HolderLease: 1}})
	}
	payload := b.appendTo(nil)
	if len(payload)+minFrame > maxFrame {
		t.Fatalf("the batch does not fit in a frame: %d bytes", len(payload))
	}
	raw, err := rc.send(payload, nil)
	var a copyAnswer
	if err != nil || a.decode(raw) != nil {
		t.Fatalf("answer: %v", err)
	}
	if a.Err == "" || keptCopies(peer) != 0 {
		t.Errorf("a batch of %d copies: taken %d (answer %q), want refused", len(b.Items), keptCopies(peer), a.Err)
	}
	// One of maxCopyBatch is taken.
	b.Items = b.Items[:maxCopyBatch]
	if raw, err = rc.send(b.appendTo(nil), nil); err != nil || a.decode(raw) != nil || a.Err != "" || len(a.OK) != maxCopyBatch {
		t.Fatalf("a batch of %d: %+v, %v", maxCopyBatch, a, err)
	}
	if n := keptCopies(peer); n != maxCopyBatch {
		t.Errorf("kept %d copies, want %d", n, maxCopyBatch)
	}
}

// The first request after a hello is bounded too: a hello seen on the
// wire opens again, so anyone who saw one can send it. A request announcing
// more than maxFirstRequest is refused at its length, before its bytes are
// read; once a request opened, the connection takes frames up to maxFrame.
func TestPeerFirstRequestSmall(t *testing.T) {
	peer := peerStore(t, "b", 2, testPeerKey)
	rc := connectPeer(t, peer)
	rc.hello(t)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], maxFrame)
	if _, err := rc.c.Write(n[:]); err != nil {
		t.Fatal(err)
	}
	an, says, err := rc.in.read(rc.r, nil)
	if err != nil || !bytes.Equal(an, refusalNonce) || !bytes.Contains(says, []byte("first request")) {
		t.Fatalf("a first request of %d bytes announced after a hello: %q, %v; want refused at once", maxFrame, says, err)
	}
	if got := refusals(t, peer, "version"); got != 1 {
		t.Errorf("refusals counted: %v, want 1", got)
	}
	// A holder's connection, opened with an empty batch, takes a batch
	// far larger than maxFirstRequest.
	rc = dialPeer(t, peer)
	b := copyBatch{From: "a", FromLease: 1, To: "b", ToLease: 2}
	for i := range maxCopyBatch {
		b.Items = append(b.Items, copyItem{Tenant: "t", ID: fmt.Sprintf("svc-%0100d", i), HBRev: 3, Stored: 9e18,
			State: hbRecord{Seq: 1, Deadline: 9e18, Holder: "a", HolderLease: 1}})
	}
	payload := b.appendTo(nil)
	if len(payload) <= maxFirstRequest {
		t.Fatalf("a full batch of %d bytes is not past maxFirstRequest", len(payload))
	}
	raw, err := rc.send(payload, nil)
	var a copyAnswer
	if err != nil || a.decode(raw) != nil || a.Err != "" || len(a.OK) != maxCopyBatch {
		t.Fatalf("a full batch on an opened connection: %+v, %v", a, err)
	}
}

// A request sent again on its own connection (by one who can write into
// it) is refused: each request's nonce must count up from the one before.
func TestPeerRequestNotTakenTwice(t *testing.T) {
	peer := peerStore(t, "b", 2, testPeerKey)
	rc := dialPeer(t, peer)
	it := copyItem{Tenant: "t", ID: "svc", HBRev: 3, Stored: 9e18, State: hbRecord{Seq: 4, Deadline: 9e18, Holder: "a", HolderLease: 1}}
	first := rc.frame((&copyBatch{From: "a", FromLease: 1, To: "b", ToLease: 2, Items: []copyItem{it}}).appendTo(nil), nil)
	raw, err := rc.sendFrame(first)
	var a copyAnswer
	if err != nil || a.decode(raw) != nil || len(a.OK) != 1 || !a.OK[0] {
		t.Fatalf("a first request: %+v, %v", a, err)
	}
	if raw, err := rc.sendFrame(first); err == nil {
		a.decode(raw)
		t.Errorf("the same request sent again on its connection was answered: %+v", a)
	}
	if n := refusals(t, peer, "replay"); n != 1 {
		t.Errorf("refusals counted: %v, want 1", n)
	}
}

// A copy waits at most about copyTimeout for a peer that stopped
// answering (a stalled process, a partition that drops packets): its
// connection is dialled again only if it failed otherwise (the peer closed
// it while it was idle), not after a timeout, which would double the wait
// of every heartbeat in the batch. What shows it is that no second
// connection is dialled, not how long the copy took.
func TestCopyWaitsOneTimeoutForASilentPeer(t *testing.T) {
	var silent atomic.Bool
	var dialled atomic.Int32
	var peerAddr atomic.Value
	relay := testnet.Serve(t, func(c net.Conn) {
		dialled.Add(1)
		t.Cleanup(func() { c.Close() })
		p, err := net.Dial("tcp", peerAddr.Load().(string))
		if err != nil {
			c.Close()
			return
		}
		t.Cleanup(func() { p.Close() })
		go io.Copy(c, p)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 && !silent.Load() {
				p.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
	holder, peer := peerPair(t, testPeerKey, testPeerKey, relay)
	peerAddr.Store(peer.peerAddr)
	it := copyItem{Tenant: "t", ID: "svc", HBRev: 3, Stored: 9e18, State: hbRecord{Seq: 1, Deadline: 9e18, Holder: "a", HolderLease: 1}}
	if r := holder.sendCopy(context.Background(), it); r.err != nil || !r.ok {
		t.Fatalf("a first copy: %+v", r)
	}
	silent.Store(true)
	it.State.Seq++
	start := time.Now()
	r := holder.sendCopy(context.Background(), it)
	took := time.Since(start)
	if r.err == nil {
		t.Fatalf("a copy to a silent peer: %+v", r)
	}
	if n := dialled.Load(); n != 1 {
		t.Errorf("%d connections dialled to the peer, want 1: the copy that timed out was sent again on a new one (it took %v: %v)", n, took, r.err)
	}
}

// A connection's first frame, which anyone who reaches the port can send,
// is a hello: one announcing more than a small frame is refused at its
// length, before its bytes are read and held. 256 connections each
// sending most of a 512 kB frame held some 300 MB of a node.
func TestPeerFirstFrameSmall(t *testing.T) {
	peer := peerStore(t, "b", 2, testPeerKey)
	c := connectPeer(t, peer).c
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], maxFrame)
	if _, err := c.Write(n[:]); err != nil {
		t.Fatal(err)
	}
	// Nothing of the frame follows: the refusal comes at its length.
	var in frameBuf
	an, says, err := in.read(bufio.NewReader(c), nil)
	if err != nil || !bytes.Equal(an, refusalNonce) || !bytes.Contains(says, []byte("not a hello")) {
		t.Fatalf("a first frame of %d bytes announced: %q, %v; want refused at once", maxFrame, says, err)
	}
	if got := refusals(t, peer, "secret"); got != 1 {
		t.Errorf("refusals counted: %v, want 1", got)
	}
}
