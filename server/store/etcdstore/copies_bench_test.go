package etcdstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/svcreg/svcreg/internal/proccpu"
)

// BenchmarkCopyRoundTrip measures the copy path alone, both ends in this
// process over loopback TCP: a holder's sendCopy to its peer, with
// concurrent heartbeats (writers) sharing each batch, as in
// BenchmarkHeartbeats. It reports the CPU per copy (both ends together)
// and the copies per batch. Run it with
//
//	go test -run '^$' -bench CopyRoundTrip ./server/store/etcdstore/
func BenchmarkCopyRoundTrip(b *testing.B) {
	for _, writers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			holder, _ := peerPair(b, testPeerKey, testPeerKey, "")

			cpu0, err := proccpu.Self()
			if err != nil {
				b.Fatal(err)
			}
			batches0, _ := observed(b, holder.metrics.copyBatch)
			b.ResetTimer()
			var wg sync.WaitGroup
			per := max(1, b.N/writers)
			for w := range writers {
				wg.Go(func() {
					for i := range per {
						it := copyItem{Tenant: "tenant-0123456789", ID: fmt.Sprintf("svc-%02d-%d", w, i%8), HBRev: 10, Stored: 1e18,
							State: hbRecord{Incarnation: 1, Seq: uint32(i + 1), Cur: "0123456789abcdef0123456789abcdef-1", Prev: "0123456789abcdef0123456789abcdef-0", Deadline: 1e18, LastSeen: 1e12, Holder: "a", HolderLease: 1}}
						if r := holder.sendCopy(context.Background(), it); r.err != nil || !r.ok {
							b.Errorf("copy: %+v", r)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			cpu1, err := proccpu.Self()
			if err != nil {
				b.Fatal(err)
			}
			n := float64(per * writers)
			cpu := cpu1 - cpu0
			b.ReportMetric(float64(cpu.Nanoseconds())/n/1000, "cpu-µs/copy")
			batches, _ := observed(b, holder.metrics.copyBatch)
			b.ReportMetric(n/(batches-batches0), "copies/batch")
		})
	}
}

var testPeerKey = []byte("0123456789abcdef0123456789abcdef")

// peerPair starts two Stores with just what copies need (a node id, a live
// lease, the peer key, startPeer's listener and sender): a holder "a"
// whose peer is "b", with holderKey and peerKey. The holder reaches the
// peer at via if not "" (a relay), else at its own address.
func peerPair(t testing.TB, holderKey, peerKey []byte, via string) (holder, peer *Store) {
	peer = peerStore(t, "b", 2, peerKey)
	holder = peerStore(t, "a", 1, holderKey)
	addr := peer.peerAddr
	if via != "" {
		addr = via
	}
	holder.peers.mu.Lock()
	holder.peers.nodes["b"] = peerInfo{id: "b", lease: 2, addr: addr}
	holder.choosePeer()
	holder.peers.mu.Unlock()
	return holder, peer
}

func peerStore(t testing.TB, id string, lease clientv3.LeaseID, key []byte) *Store {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{nodeID: id, log: slog.New(slog.NewTextHandler(io.Discard, nil)), peerAEAD: aead}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { s.cancel(); s.wg.Wait() })
	s.metrics = newMetrics(nil, func() bool { return true })
	s.hb.init()
	s.lease.set(lease, time.Now(), 3600)
	s.opts.PeerListen = "127.0.0.1:0"
	if s.peerAddr, err = s.startPeer(); err != nil {
		t.Fatal(err)
	}
	return s
}

// observed is how many observations h has had, and their sum.
func observed(tb testing.TB, h prometheus.Histogram) (count, sum float64) {
	tb.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		tb.Fatal(err)
	}
	return float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
}

// keptCopies is how many copies s keeps for other nodes.
func keptCopies(s *Store) int {
	s.copies.mu.Lock()
	defer s.copies.mu.Unlock()
	return len(s.copies.m)
}
