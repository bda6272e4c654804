package etcdstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/svcreg/svcreg/internal/testnet"
)

// The rules by which a peer takes copies: newer revisions replace older
// ones (and what was fenced at them), an older revision is refused, a copy
// at a fenced revision is refused (the holder must write to etcd), and an
// older copy at the same revision changes nothing.
func TestCopyRules(t *testing.T) {
	c := copies{m: map[hbKey]*copyEntry{}}
	item := func(rev int64, seq uint32, deadline int64) copyItem {
		return copyItem{Tenant: "t", ID: "svc", HBRev: rev, Stored: deadline + 100, State: hbRecord{Seq: seq, Deadline: deadline}}
	}
	k := hbKey{"t", "svc"}
	steps := []struct {
		what    string
		it      copyItem
		fence   bool // fence the entry before this step
		ok      bool
		wantSeq uint32
	}{
		{what: "first copy", it: item(10, 1, 1000), ok: true, wantSeq: 1},
		{what: "next heartbeat", it: item(10, 2, 2000), ok: true, wantSeq: 2},
		{what: "an older copy, late", it: item(10, 1, 1000), ok: true, wantSeq: 2},
		{what: "an older revision", it: item(9, 7, 9000), ok: false, wantSeq: 2},
		{what: "fenced", it: item(10, 3, 3000), fence: true, ok: false, wantSeq: 2},
		{what: "a newer revision after the fence", it: item(11, 4, 4000), ok: true, wantSeq: 4},
	}
	for _, st := range steps {
		if st.fence {
			c.m[k].fenced = true
		}
		if got := c.take("holder", 1, 2, st.it); got != st.ok {
			t.Errorf("%s: took %v, want %v", st.what, got, st.ok)
		}
		if e := c.m[k]; e.state.Seq != st.wantSeq {
			t.Errorf("%s: the copy is at seq %d, want %d", st.what, e.state.Seq, st.wantSeq)
		}
	}
	if e := c.m[k]; e.fenced || e.hbRev != 11 || e.state.Deadline != 4000 {
		t.Errorf("after a newer revision: %+v", e)
	}
}

// A peer that a request reached keeps being the peer even if the request
// failed (it may have taken the copy, and would time the service out at
// its deadline while this node answered from memory); only a peer that
// could not be reached at all is passed over.
func TestPeerKeptOnceReached(t *testing.T) {
	newStore := func() *Store {
		s := &Store{nodeID: "b", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		t.Cleanup(func() { s.cancel(); s.wg.Wait() })
		s.peers.nodes = map[string]peerInfo{
			"a": {id: "a", lease: 1, addr: "127.0.0.1:1"},
			"c": {id: "c", lease: 3, addr: "127.0.0.1:3"},
			"d": {id: "d", lease: 4, addr: "127.0.0.1:4"},
		}
		s.peers.unreachable = map[string]time.Time{}
		s.peers.mu.Lock()
		s.choosePeer()
		s.peers.mu.Unlock()
		if got := s.peerState().target.id; got != "c" {
			t.Fatalf("node b chose %q, want c (the next id)", got)
		}
		return s
	}

	s := newStore()
	s.peerFailed(s.peerState().target, &dialError{errors.New("connection refused")})
	if got := s.peerState().target.id; got != "d" {
		t.Errorf("after a failed connect the peer is %q, want d", got)
	}

	s = newStore()
	s.peerFailed(s.peerState().target, errors.New("read: i/o timeout"))
	if got := s.peerState().target.id; got != "c" {
		t.Errorf("after a request that may have arrived the peer is %q, want c still", got)
	}
	s.peerFailed(s.peerState().target, &dialError{errors.New("connection refused")})
	if got := s.peerState().target.id; got != "c" {
		t.Errorf("a peer that may have a copy was passed over for %q", got)
	}
	// Once its node key is gone, the next one after it.
	s.peers.mu.Lock()
	delete(s.peers.nodes, "c")
	s.choosePeer()
	s.peers.mu.Unlock()
	if got := s.peerState().target.id; got != "d" {
		t.Errorf("with c gone the peer is %q, want d", got)
	}
	// The same id on a new lease is another node as far as copies go.
	s.peers.mu.Lock()
	s.peers.nodes["d"] = peerInfo{id: "d", lease: 5, addr: "127.0.0.1:4"}
	s.choosePeer()
	s.peers.mu.Unlock()
	if got := s.peerState().target; got.id != "d" || got.lease != 5 {
		t.Errorf("after d's new lease the peer is %+v", got)
	}

	// The only other node, not reached, is passed over; once that ends it
	// is the peer again, though no node came or went.
	s = newStore()
	s.peers.mu.Lock()
	s.peers.passOver = 50 * time.Millisecond
	s.peers.nodes = map[string]peerInfo{"c": {id: "c", lease: 3, addr: "127.0.0.1:3"}}
	s.peers.mu.Unlock()
	s.peerFailed(s.peerState().target, &dialError{errors.New("connection refused")})
	if got := s.peerState().target.id; got != "" {
		t.Errorf("after a failed connect to the only other node the peer is %q, want none", got)
	}
	for deadline := time.Now().Add(10 * time.Second); s.peerState().target.id != "c"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node passed over is not the peer again once its time is over")
		}
	}
}

// When the peer changes, the old peer's fences go with it: every held
// service is marked to go to etcd before it is answered from memory again,
// and none is answered from memory until that is done.
func TestPeerChangeRereadsHeld(t *testing.T) {
	s := &Store{nodeID: "b", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { s.cancel(); s.wg.Wait() })
	s.hb.init()
	s.copyQueue = newCopyQueue() // copies on; nothing sends them here
	s.peers.nodes = map[string]peerInfo{"c": {id: "c", lease: 3, addr: "127.0.0.1:3"}}
	s.peers.unreachable = map[string]time.Time{}
	// Node b had peer a, which is gone; c is next.
	s.peers.target, s.peers.acked = peerInfo{id: "a", lease: 1, addr: "127.0.0.1:1"}, true
	e := s.hb.lock("t", "svc", time.Now())
	e.loaded, e.exists = true, true
	e.setMem(hbRecord{Seq: 1, Deadline: 1}, true)
	// The change waits for the entry: no answer from memory meanwhile.
	s.peers.mu.Lock()
	s.choosePeer()
	s.peers.mu.Unlock()
	if got := s.peerState().target.id; got != "c" {
		t.Fatalf("the peer is %q, want c", got)
	}
	if s.peerState().ready {
		t.Error("ready before the held services were marked")
	}
	if ok, _ := s.copyTo(context.Background(), e, hbRecord{Seq: 2}); ok {
		t.Error("answered from memory before the held services were marked")
	}
	e.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if s.peerState().ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.verify {
		t.Error("the held service was not marked to be read again")
	}
}

// A frame's length is checked before anything is read, and a frame cut
// short is an error, not a short payload.
func TestReadFrameBounds(t *testing.T) {
	frame := func(n uint32, body []byte) *bufio.Reader {
		return bufio.NewReader(bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, n), body...)))
	}
	if _, _, err := new(frameBuf).read(frame(maxFrame+1, nil), nil); !errors.Is(err, errFrameSize) {
		t.Errorf("a frame over the limit: %v", err)
	}
	if _, _, err := new(frameBuf).read(frame(minFrame-1, make([]byte, minFrame-1)), nil); !errors.Is(err, errFrameSize) {
		t.Errorf("a frame shorter than a nonce and a tag: %v", err)
	}
	if _, _, err := new(frameBuf).read(frame(maxFrame, make([]byte, 100)), nil); err == nil {
		t.Error("a frame cut short was read")
	}
	// One buffer reads frame after frame, as a connection's end does: each
	// read gives that frame, of whatever size; one past keptFrameBuf is not
	// kept once done with.
	var stream []byte
	var bodies [][]byte
	for i, n := range []int{2, keptFrameBuf + 1, 1, 300} {
		body := append(make([]byte, minFrame-nonceSize), bytes.Repeat([]byte{byte('a' + i)}, n)...)
		bodies = append(bodies, body)
		stream = binary.BigEndian.AppendUint32(stream, uint32(nonceSize+len(body)))
		stream = append(append(stream, bytes.Repeat([]byte{byte(i)}, nonceSize)...), body...)
	}
	r := bufio.NewReader(bytes.NewReader(stream))
	var f frameBuf
	for i, want := range bodies {
		nonce, got, err := f.read(r, nil)
		if err != nil || !bytes.Equal(nonce, bytes.Repeat([]byte{byte(i)}, nonceSize)) || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: nonce %x, %d bytes, %v", i, nonce, len(got), err)
		}
		f.done()
		if cap(f.b) > keptFrameBuf {
			t.Errorf("after frame %d (%d bytes), %d bytes are kept", i, len(want), cap(f.b))
		}
	}
}

// A node that had no peer (alone, or at its start) takes its first one
// without marking what it holds: no peer had copies to hand over from.
func TestFirstPeerNeedsNoReread(t *testing.T) {
	s := &Store{nodeID: "b", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { s.cancel(); s.wg.Wait() })
	s.hb.init()
	s.copyQueue = newCopyQueue()
	s.peers.nodes = map[string]peerInfo{"c": {id: "c", lease: 3, addr: "127.0.0.1:3"}}
	s.peers.unreachable = map[string]time.Time{}
	e := s.hb.lock("t", "svc", time.Now())
	e.loaded, e.exists = true, true
	e.setMem(hbRecord{Seq: 1, Deadline: 1}, true)
	e.mu.Unlock()
	s.peers.mu.Lock()
	s.choosePeer()
	s.peers.mu.Unlock()
	if p := s.peerState(); p.target.id != "c" || !p.ready {
		t.Fatalf("after the first peer: %+v, want c and ready", p)
	}
	s.cancel()
	s.wg.Wait()
	if e.verify {
		t.Error("a held service was marked to be read again")
	}
}

// Peer traffic is sealed: the tokens and ids in a copy do not cross the
// wire in the clear, and a holder without the registry's secret is refused
// (and told why) rather than taken.
func TestPeerFramesSealed(t *testing.T) {
	var (
		mu     sync.Mutex
		wire   bytes.Buffer
		dirs   [2]bytes.Buffer // requests, answers
		target atomic.Value    // the peer's address
	)
	relay := testnet.Serve(t, func(c net.Conn) {
		p, err := net.Dial("tcp", target.Load().(string))
		if err != nil {
			c.Close()
			return
		}
		record := func(dst, src net.Conn, dir *bytes.Buffer) {
			defer dst.Close()
			buf := make([]byte, 4096)
			for {
				n, err := src.Read(buf)
				mu.Lock()
				wire.Write(buf[:n])
				dir.Write(buf[:n])
				mu.Unlock()
				if err != nil || func() error { _, err := dst.Write(buf[:n]); return err }() != nil {
					return
				}
			}
		}
		go record(p, c, &dirs[0])
		record(c, p, &dirs[1])
	})
	holder, peer := peerPair(t, testPeerKey, testPeerKey, relay)
	target.Store(peer.peerAddr)
	it := copyItem{Tenant: "tenant-in-the-clear", ID: "svc-in-the-clear", HBRev: 3, Stored: 9e18,
		State: hbRecord{Seq: 4, Cur: "token-in-the-clear", Deadline: 9e18, Holder: "a", HolderLease: 1}}
	if r := holder.sendCopy(context.Background(), it); r.err != nil || !r.ok {
		t.Fatalf("copy through the relay: %+v", r)
	}
	peer.copies.mu.Lock()
	got := peer.copies.m[hbKey{it.Tenant, it.ID}]
	peer.copies.mu.Unlock()
	if got == nil || got.state != it.State {
		t.Fatalf("the peer has %+v, want the copied state", got)
	}
	// A second copy on the same connection: no nonce repeats, either way.
	it.State.Seq++
	if r := holder.sendCopy(context.Background(), it); r.err != nil || !r.ok {
		t.Fatalf("second copy through the relay: %+v", r)
	}
	mu.Lock()
	seen := wire.String()
	nonces := map[string]bool{}
	for _, d := range dirs {
		r := bufio.NewReader(bytes.NewReader(d.Bytes()))
		for {
			nonce, _, err := new(frameBuf).read(r, nil)
			if err != nil {
				break
			}
			if nonces[string(nonce)] {
				t.Errorf("nonce %x used twice", nonce)
			}
			nonces[string(nonce)] = true
		}
	}
	mu.Unlock()
	if len(nonces) != 8 {
		t.Errorf("the relay saw %d frames, want a hello, an empty first request, 2 requests and their 4 answers", len(nonces))
	}
	if len(seen) < 2*minFrame {
		t.Fatalf("the relay saw %d bytes", len(seen))
	}
	for _, s := range []string{it.Tenant, it.ID, it.State.Cur} {
		if strings.Contains(seen, s) {
			t.Errorf("%q crossed the wire in the clear", s)
		}
	}

	// What the holder sent, sent again on a connection of its own: the
	// hello is answered (with another challenge), the request is not.
	mu.Lock()
	sent := slices.Clone(dirs[0].Bytes())
	mu.Unlock()
	replay, err := net.Dial("tcp", peer.peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer replay.Close()
	replay.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := replay.Write(sent); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(replay)
	if nonce, _, err := new(frameBuf).read(r, nil); err != nil || bytes.Equal(nonce, refusalNonce) {
		t.Fatalf("the hello sent again: %v (refused: %v), want its challenge", err, err == nil)
	}
	nonce, body, err := new(frameBuf).read(r, nil)
	if err != nil || !bytes.Equal(nonce, refusalNonce) || !strings.Contains(string(body), "for this connection") {
		t.Errorf("a request sent again on another connection: %q, %v; want a refusal", body, err)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Error("the connection of a request sent again stays open")
	}
	if n := refusals(t, peer, "secret"); n != 1 {
		t.Errorf("refusals counted: %v, want 1", n)
	}

	forger, peer2 := peerPair(t, []byte("another registry's key, 32 bytes"), testPeerKey, "")
	res := forger.sendCopy(context.Background(), it)
	if res.ok || res.err == nil || !strings.Contains(res.err.Error(), "not sealed with this registry's secret") {
		t.Errorf("a copy sealed with another key: %+v", res)
	}
	if n := keptCopies(peer2); n != 0 {
		t.Errorf("the peer took %d copies sealed with another key", n)
	}
	// The peer refused the hello in the clear: a node that answered (of
	// another secret or version) stays the peer, its copies written to
	// etcd, rather than being passed over for one that may not answer.
	forger.peers.mu.Lock()
	peerID, acked := forger.peers.target.id, forger.peers.acked
	forger.peers.mu.Unlock()
	if peerID != "b" || !acked {
		t.Errorf("after its hello was refused the holder's peer is %q (reached: %v), want b, reached", peerID, acked)
	}

	// A node of the version before sends a request first, sealed without
	// a challenge: refused as such.
	old, err := net.Dial("tcp", peer2.peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.SetDeadline(time.Now().Add(10 * time.Second))
	payload := (&copyBatch{From: "a", FromLease: 1, To: "b", ToLease: 2, Items: []copyItem{it}}).appendTo(nil)
	on := newNonces().next(nil)
	w := bufio.NewWriter(old)
	if err := writeFrame(w, on, peer2.peerAEAD.Seal(nil, on, payload, requestAD)); err != nil {
		t.Fatal(err)
	}
	if nonce, body, err := new(frameBuf).read(bufio.NewReader(old), nil); err != nil || !bytes.Equal(nonce, refusalNonce) || !strings.Contains(string(body), "earlier version") {
		t.Errorf("copies of a node of the version before: %q, %v; want a refusal", body, err)
	}
	if n := refusals(t, peer2, "version"); n != 1 || keptCopies(peer2) != 0 {
		t.Errorf("refusals for the version counted: %v, copies taken: %d; want 1 and none", n, keptCopies(peer2))
	}
}

// refusals is how many requests s refused for reason.
func refusals(t *testing.T, s *Store, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := s.metrics.copyRefusals.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// gatedRelay forwards connections to the address target returns, holding
// what the holder sends until gate is closed; arrived is closed once the
// first bytes from a holder are held.
func gatedRelay(t *testing.T, target func() string, gate <-chan struct{}, arrived chan<- struct{}) string {
	var once sync.Once
	return testnet.Serve(t, func(c net.Conn) {
		p, err := net.Dial("tcp", target())
		if err != nil {
			c.Close()
			return
		}
		t.Cleanup(func() { c.Close(); p.Close() })
		go io.Copy(c, p)
		buf := make([]byte, 64<<10)
		for held := false; ; held = true {
			n, err := c.Read(buf)
			if !held && n > 0 {
				once.Do(func() { close(arrived) })
				<-gate
			}
			if n > 0 {
				if _, werr := p.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// Copies queued while a batch is on its way go together in the next ones,
// up to maxCopyBatch each, with no new wake-up; a copy whose request ends
// while it is queued is withdrawn and never sent. When the store closes,
// the sender stops after the batch on its way, answers every copy still
// queued and takes no more.
func TestCopyQueue(t *testing.T) {
	var peerAddr atomic.Value
	gate, arrived := make(chan struct{}), make(chan struct{})
	relay := gatedRelay(t, func() string { return peerAddr.Load().(string) }, gate, arrived)
	holder, peer := peerPair(t, testPeerKey, testPeerKey, relay)
	peerAddr.Store(peer.peerAddr)
	const queued = maxCopyBatch + 44
	results := make(chan copyResult, 1+queued)
	go func() { results <- holder.sendCopy(context.Background(), queuedItem("first")) }()
	select { // the first batch is on its way, held by the relay
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the first copy did not reach the relay")
	}
	for i := range queued {
		go func() { results <- holder.sendCopy(context.Background(), queuedItem(fmt.Sprint("svc-", i))) }()
	}
	waitQueued(t, holder.copyQueue, queued)
	ctx, cancel := context.WithCancel(context.Background())
	withdrawn := make(chan copyResult, 1)
	go func() { withdrawn <- holder.sendCopy(ctx, queuedItem("withdrawn")) }()
	waitQueued(t, holder.copyQueue, queued+1)
	cancel()
	if r := <-withdrawn; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("a copy whose request ended while queued: %+v", r)
	}
	waitQueued(t, holder.copyQueue, queued)

	close(gate)
	for i := range 1 + queued {
		select {
		case r := <-results:
			if r.err != nil || !r.ok {
				t.Fatalf("a copy: %+v", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d copies answered", i, 1+queued)
		}
	}
	if n, sum := observed(t, holder.metrics.copyBatch); n != 3 || sum != 1+queued {
		t.Errorf("%v batches carrying %v copies, want 3 (1, %d, 44) carrying %d", n, sum, maxCopyBatch, 1+queued)
	}
	peer.copies.mu.Lock()
	sent := peer.copies.m[hbKey{"t", "withdrawn"}] != nil
	peer.copies.mu.Unlock()
	if kept := keptCopies(peer); kept != 1+queued || sent {
		t.Errorf("the peer keeps %d copies (the withdrawn one: %v), want %d", kept, sent, 1+queued)
	}

	// Closing: copies queued behind a batch on its way are answered by
	// the sender itself.
	holder2, _ := peerPair(t, testPeerKey, testPeerKey, gatedRelay(t, func() string { return peerAddr.Load().(string) }, make(chan struct{}), make(chan struct{})))
	first := &copyReq{item: queuedItem("first"), done: make(chan copyResult, 1)}
	holder2.copyQueue.add(first)
	waitQueued(t, holder2.copyQueue, 0) // taken by the sender
	var behind []*copyReq
	for i := range 5 {
		r := &copyReq{item: queuedItem(fmt.Sprint("behind-", i)), done: make(chan copyResult, 1)}
		holder2.copyQueue.add(r)
		behind = append(behind, r)
	}
	holder2.cancel()
	holder2.wg.Wait() // the batch on its way fails at copyTimeout
	if r := <-first.done; r.err == nil {
		t.Errorf("the batch on its way when the store closed: %+v", r)
	}
	for _, r := range behind {
		select {
		case res := <-r.done:
			if !errors.Is(res.err, errCopiesStopped) {
				t.Errorf("a copy queued when the store closed: %+v", res)
			}
		default:
			t.Fatal("a copy queued when the store closed was not answered")
		}
	}
	if holder2.copyQueue.add(&copyReq{done: make(chan copyResult, 1)}) {
		t.Error("the queue takes copies after the sender stopped")
	}
	if r := holder2.sendCopy(context.Background(), queuedItem("late")); !errors.Is(r.err, errCopiesStopped) {
		t.Errorf("a copy sent after the store closed: %+v", r)
	}
}

// queuedItem is a copy of service id, for the queue's tests.
func queuedItem(id string) copyItem {
	return copyItem{Tenant: "t", ID: id, HBRev: 1, Stored: 9e18, State: hbRecord{Seq: 1, Deadline: 9e18}}
}

// waitQueued waits until q holds want copies.
func waitQueued(t *testing.T, q *copyQueue, want int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		q.mu.Lock()
		n := len(q.pending)
		q.mu.Unlock()
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d copies queued, want %d", n, want)
		}
	}
}

// A copy that finds the sender idle waits for others to share its round
// trip: up to CopyLinger, or until copyGather copies are queued. Each part
// has a holder of its own, whose sender is idle: one that just answered a
// batch takes what arrived meanwhile at once, without a linger.
func TestCopyLinger(t *testing.T) {
	holder, peer := peerPair(t, testPeerKey, testPeerKey, "")
	// Set before the first copy rings the sender's bell, which reads it.
	holder.opts.CopyLinger = time.Hour
	results := make(chan copyResult, copyGather)
	for i := range copyGather - 1 {
		go func() { results <- holder.sendCopy(context.Background(), queuedItem(fmt.Sprint("svc-", i))) }()
		waitQueued(t, holder.copyQueue, i+1)
	}
	select {
	case r := <-results:
		t.Fatalf("a copy was sent before copyGather were queued, within the linger: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	go func() { results <- holder.sendCopy(context.Background(), queuedItem("last")) }()
	for i := range copyGather {
		select {
		case r := <-results:
			if r.err != nil || !r.ok {
				t.Fatalf("a copy: %+v", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d copies answered once copyGather were queued", i, copyGather)
		}
	}
	if n, copies := observed(t, holder.metrics.copyBatch); n != 1 || copies != copyGather {
		t.Errorf("%v batches carrying %v copies, want 1 carrying %d", n, copies, copyGather)
	}
	if n := keptCopies(peer); n != copyGather {
		t.Errorf("the peer keeps %d copies, want %d", n, copyGather)
	}

	// Alone, a copy goes once the linger has passed.
	alone, peer := peerPair(t, testPeerKey, testPeerKey, "")
	alone.opts.CopyLinger = 20 * time.Millisecond
	start := time.Now()
	if r := alone.sendCopy(context.Background(), queuedItem("alone")); r.err != nil || !r.ok {
		t.Fatalf("a copy alone: %+v", r)
	}
	if took := time.Since(start); took < alone.opts.CopyLinger {
		t.Errorf("a copy alone was answered in %v, before its linger (%v) had passed", took, alone.opts.CopyLinger)
	}
	if n, copies := observed(t, alone.metrics.copyBatch); n != 1 || copies != 1 {
		t.Errorf("%v batches carrying %v copies, want 1 carrying 1", n, copies)
	}
	if n := keptCopies(peer); n != 1 {
		t.Errorf("the peer keeps %d copies, want 1", n)
	}

	// A closing store answers a lingering copy at once.
	closing, _ := peerPair(t, testPeerKey, testPeerKey, "")
	closing.opts.CopyLinger = time.Hour
	lingering := make(chan copyResult, 1)
	go func() { lingering <- closing.sendCopy(context.Background(), queuedItem("lingering")) }()
	waitQueued(t, closing.copyQueue, 1)
	closing.cancel()
	select {
	case r := <-lingering:
		if !errors.Is(r.err, errCopiesStopped) {
			t.Errorf("a lingering copy when the store closed: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lingering copy was not answered when the store closed")
	}
	stopped := make(chan struct{})
	go func() { closing.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the sender did not stop while it lingered")
	}
}

// Anyone who reaches a node's peer port can open connections that send
// nothing, or a hello seen on the wire (answered, it proves nothing); once
// they fill its slots, a new one takes the slot of one on which no request
// has opened with the secret, so a holder still gets its copies through,
// and a holder's connection, whose requests opened, keeps its slot however
// many come after it.
func TestPeerSlotsGoToHolders(t *testing.T) {
	for _, hello := range []bool{false, true} {
		name := "idle"
		if hello {
			name = "hellos seen on the wire"
		}
		t.Run(name, func(t *testing.T) { peerSlotsGoToHolders(t, hello) })
	}
}

func peerSlotsGoToHolders(t *testing.T, hello bool) {
	holder, peer := peerPair(t, testPeerKey, testPeerKey, "")
	nonce := newNonces().next(nil)
	helloFrame := peer.peerAEAD.Seal(nil, nonce, nil, helloAD)
	flood := func(n int) []net.Conn {
		conns := make([]net.Conn, n)
		for i := range conns {
			c, err := net.Dial("tcp", peer.peerAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			conns[i] = c
			if !hello {
				continue
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if err := writeFrame(bufio.NewWriter(c), nonce, helloFrame); err != nil {
				t.Fatal(err)
			}
			// Its answer, unless a later one took its slot first.
			if an, _, err := new(frameBuf).read(bufio.NewReader(c), nil); err == nil && bytes.Equal(an, refusalNonce) {
				t.Fatal("a hello seen on the wire was refused")
			}
		}
		return conns
	}
	closed := func(c net.Conn) bool { // well before peerFirst closes it
		c.SetReadDeadline(time.Now().Add(peerFirst / 2))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}
	idle := flood(maxPeerConns + 1)
	if !closed(idle[0]) {
		t.Fatal("the oldest connection kept its slot past the bound")
	}
	for i := range 3 {
		if r := holder.sendCopy(context.Background(), queuedItem(fmt.Sprint("svc-", i))); r.err != nil || !r.ok {
			t.Fatalf("copy %d with the peer's slots full: %+v", i, r)
		}
		flood(maxPeerConns + 1)
	}
	var m dto.Metric
	if err := holder.metrics.copyFailures.Write(&m); err != nil {
		t.Fatal(err)
	}
	if f := m.GetCounter().GetValue(); f != 0 {
		t.Errorf("%v copy round trips failed: the holder's connection lost its slot", f)
	}
}

// A holder shares its address with whatever else runs on its host (every
// node and local process, with the default --etcd-peer-listen of
// 127.0.0.1): connections from there that send nothing, however many,
// take one another's slots before that of a connection whose hello
// opened with the secret, so a holder that connects while they flood
// still gets its first request through.
func TestPeerSlotsSpareAHelloFromTheFloodsAddress(t *testing.T) {
	peer := peerStore(t, "b", 2, testPeerKey)
	holder := connectPeer(t, peer)
	holder.hello(t)
	for range maxPeerConns + 1 { // from the holder's address, 127.0.0.1
		c, err := net.Dial("tcp", peer.peerAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	// Connections are given slots in the order they are accepted: one
	// answered after the flood was accepted after it.
	connectPeer(t, peer).hello(t)
	raw, err := holder.send((&copyBatch{From: "a", FromLease: 1, To: "b", ToLease: 2}).appendTo(nil), nil)
	var a copyAnswer
	if err != nil || a.decode(raw) != nil || a.Err != "" {
		t.Fatalf("the holder's first request, after a flood from its address: %+v, %v", a, err)
	}
}
