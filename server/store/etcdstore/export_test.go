package etcdstore

import (
	"bufio"
	"net"
	"time"

	"github.com/svcreg/svcreg/server/store"
)

// Crash stops s as a killed process would stop: its background work ends
// where it is, and its node key is left for its lease to expire.
func Crash(s *Store) {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.closeMembers()
	})
}

// LoseNextHeartbeatAnswer makes s's next heartbeat batch fail after it
// committed, as if etcd's answer was lost on the way back.
func LoseNextHeartbeatAnswer(s *Store) { s.loseAnswer.Store(true) }

// LandNextLate makes s's next write called what (as its error messages
// name it) fail at once, as a request that timed out, and returns the
// write's commit, for the test to run when etcd should commit it after
// all.
func LandNextLate(s *Store, what string) <-chan func() (succeeded bool, err error) {
	l := &lateWrite{what: what, commit: make(chan func() (bool, error), 1)}
	s.late.Store(l)
	return l.commit
}

// Release makes s hand the service back to etcd, as it does when another
// node asks for it.
func Release(s *Store, tenantID, id string) error {
	return s.releaseAsked(s.ctx, tenantID, id)
}

// SetHandBackTime sets how long s, stopping gracefully, spends handing its
// services back.
func SetHandBackTime(s *Store, d time.Duration) { s.handBackTime = d }

// NodeKeys is the prefix of the nodes' liveness keys in s's registry.
func NodeKeys(s *Store) string { return s.k.nodes() }

// NodeID is s's node id.
func NodeID(s *Store) string { return s.nodeID }

// PeerOf is the node id and address of s's peer for heartbeat copies,
// once s is ready to copy to it ("" until then, or if none).
func PeerOf(s *Store) (id, addr string) {
	p := s.peerState()
	if !p.ready {
		return "", ""
	}
	return p.target.id, p.target.addr
}

// ExtendDeadlines gives every live service whose heartbeat state is at
// revision asOf or before its full timeout again, as s does on starting a
// registry that was down.
func ExtendDeadlines(s *Store, asOf int64) (int, error) { return s.extendDeadlines(s.ctx, asOf) }

// ReleaseKey is the key of a request to node holder to hand service id of
// tenantID over, in s's registry.
func ReleaseKey(s *Store, holder, tenantID, id string) string {
	return s.k.release(holder, tenantID, id)
}

// HeartbeatEntries is how many services s's heartbeat cache has entries for.
func HeartbeatEntries(s *Store) int {
	s.hb.mu.Lock()
	defer s.hb.mu.Unlock()
	return len(s.hb.entries)
}

// AfterEventCount makes s's next event cap run f once it has counted an
// account's events over its cap, before it walks them.
func AfterEventCount(s *Store, f func()) { s.afterEventCount.Store(&f) }

// CapEvents runs s's event cap once, as its loop does.
func CapEvents(s *Store) error { return s.capEvents(s.ctx) }

// ServiceKey is the key of a tenant's service in s's registry.
func ServiceKey(s *Store, tenant, id string) string { return s.k.service(tenant, id) }

// AccountKey is the key of the tenant's account in s's registry.
func AccountKey(s *Store, tenant string) string { return s.k.account(tenant) }

// AdvanceSeq moves the sequence number of the state s holds of a service n
// ahead, as n heartbeats answered from memory would.
func AdvanceSeq(s *Store, tenantID, id string, n uint32) {
	e := s.hb.lock(tenantID, id, s.now())
	defer e.mu.Unlock()
	e.mem.Seq = store.NextSeq(e.mem.Seq + n - 1)
}

// TakeCopy makes s take a copy of a service's heartbeat state, due at
// deadline, as if from holder "elsewhere" (dead to s) at revision hbRev;
// it reports whether s took it.
func TakeCopy(s *Store, tenantID, id string, hbRev, deadline int64) bool {
	lease, _ := s.lease.get()
	s.copies.mu.Lock()
	defer s.copies.mu.Unlock()
	return s.copies.take("elsewhere", 1, int64(lease), copyItem{Tenant: tenantID, ID: id, HBRev: hbRev, Stored: deadline,
		State: hbRecord{Seq: 1, Deadline: deadline, Holder: "elsewhere", HolderLease: 1}})
}

// Copies is how many copies s keeps for other nodes.
func Copies(s *Store) int {
	s.copies.mu.Lock()
	defer s.copies.mu.Unlock()
	return len(s.copies.m)
}

// MintAhead mints a token for a service that s holds, n numbers past its
// current one's, as only a wrap of the numbers could bring one back.
func MintAhead(s *Store, tenantID, id string, n uint32) string {
	e := s.hb.lock(tenantID, id, s.now())
	defer e.mu.Unlock()
	seq := e.mem.Seq
	for range n {
		seq = store.NextSeq(seq)
	}
	return s.minter.Mint(store.TokenKey{Tenant: tenantID, ID: id, Incarnation: e.rec.Incarnation}, seq, s.now().Add(time.Minute)).String()
}

// RefuseCopies reads a frame from a node on c and answers it with a
// refusal in the clear, as a node of another version or secret does.
func RefuseCopies(c net.Conn) {
	defer c.Close()
	if _, _, err := new(frameBuf).read(bufio.NewReader(c), nil); err != nil {
		return
	}
	writeFrame(bufio.NewWriter(c), refusalNonce, []byte("not sealed with this registry's secret"))
}

// Blind reports whether s, which joined a running registry, still leaves
// the due services it does not hold to the nodes that were running then
// (outage.go): its reads show them until those nodes time them out.
func Blind(s *Store) bool {
	s.outages.mu.Lock()
	defer s.outages.mu.Unlock()
	return s.outages.blind != 0 && s.now().UnixNano() < s.outages.blind
}

// CountsOnLease reports whether s counts on its node lease now: it does
// not once its renewals have failed for three quarters of its TTL (an
// outage, which the renewal that ends it records).
func CountsOnLease(s *Store) bool {
	_, alive := s.lease.get()
	return alive
}
