// Package etcdstore is the multi-node store: several svcreg server nodes
// keep accounts, services, configuration, the events feed and the identity
// tokens in one etcd cluster, and any node answers any request.
//
// Every state change and its event are committed in one etcd transaction,
// conditional on the mod revision of the tenant's account key, which every
// event-appending write rewrites: a tenant's writes are serialised by etcd,
// event ids (store.AccountRecord.NextEventID, over the account's head)
// increase strictly in commit order across all nodes, and the events feed
// is a range read of keys sorted by id. Timeouts are conditional transactions on the heartbeat
// keys' mod revisions, so each is committed exactly once whichever node's
// reaper or read gets there first. A node that writes a service's heartbeat
// holds it: the stored deadline has a slack, and the node answers the
// heartbeats within it from memory, hands the service back when another
// node needs it, and times it out at the precise deadline (heartbeat.go).
// See docs/etcd.md.
package etcdstore

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "/svcreg/"

// Options configure a Store. The zero value is usable.
type Options struct {
	// AuthMode, if not empty, is recorded as the registry's (AuthMode)
	// when Open starts, before the node joins the cluster; Open fails with
	// a *store.AuthModeError if the other is recorded.
	AuthMode string
	// Prefix is put before every key, so that one etcd cluster can hold
	// several registries (and other data); DefaultPrefix if empty.
	Prefix string
	// Clock returns the current time; time.Now by default.
	Clock func() time.Time
	// Logger receives the store's logs; nothing is logged if nil.
	Logger *slog.Logger
	// Registerer receives the store's metrics; none are registered if nil.
	Registerer prometheus.Registerer
	// DefaultLimits are given to new accounts; store.DefaultLimits if zero.
	DefaultLimits store.Limits
	// Retention is how long events are kept; 30 days if zero.
	Retention time.Duration
	// MaxEvents is the most events an account keeps: past it the oldest are
	// deleted, as retention does, within about EventCapInterval of the writes.
	// store.DefaultMaxEvents if zero; negative keeps every event for the
	// whole retention window.
	MaxEvents int
	// MaxEventBytes caps the bytes of an account's events in the same way;
	// store.DefaultMaxEventBytes (32 MiB) if zero, no cap if negative.
	// Without it one account within its write rate could fill etcd's
	// --quota-backend-bytes with large events, and etcd then refuses every
	// account's writes until an operator frees space.
	MaxEventBytes int64
	// EventCapInterval is how often this node enforces MaxEvents and
	// MaxEventBytes on the tenants it appended events to; 5s if zero.
	EventCapInterval time.Duration
	// ReapInterval is how often this node's reaper looks for services past
	// their deadline (jittered); 500ms if zero. Negative turns the reaper
	// off, leaving only the lazy rectification on reads (spec §8.4).
	ReapInterval time.Duration
	// RequestTimeout bounds every etcd call; DefaultRequestTimeout if
	// zero. A call that runs out of it fails with store.ErrUnavailable.
	RequestTimeout time.Duration
	// NodeTTL is the lease of this node's liveness key, rounded up to
	// whole seconds (etcd may grant more); DefaultNodeTTL if zero. The
	// other nodes count the node dead once it has expired; the node
	// counts on it only until three quarters of it after each renewal it
	// asked for. It also bounds how long a node starting after a crash of
	// every node waits to tell whether another node is alive (design item
	// 10).
	NodeTTL time.Duration
	// HeartbeatBatch caps the heartbeats committed in one transaction; 40
	// if zero (three write operations each, under etcd's default
	// --max-txn-ops of 128).
	HeartbeatBatch int
	// HeartbeatCommitters is how many heartbeat batches may be committing
	// at once; 4 if zero.
	HeartbeatCommitters int
	// HeartbeatLinger is how long a batch of heartbeat writes waits for
	// more after its first before it commits, if it is not full by then:
	// heartbeats that write (a service's first at a node, one whose
	// deadline passes the stored one, one that moved) then share etcd
	// commits, each a raft round with a disk sync on a quorum, at a rate
	// where none would be in flight together. DefaultHeartbeatLinger if
	// zero, at most half of RequestTimeout (which bounds a write from the
	// start of its batch's linger to its answer); negative commits at
	// once (batches then grow with load only while earlier batches
	// commit).
	HeartbeatLinger time.Duration
	// HeartbeatSlack is how far past a heartbeat's deadline a node that
	// writes it stores the deadline; the node's next heartbeats of the
	// service cost no etcd write while their deadlines are within it. It
	// bounds how late a service is timed out whose client and holding
	// node both died, when no peer has a copy of its deadline (see
	// PeerListen). If zero, DefaultHeartbeatSlack: twice the service's
	// timeout, at least a minute and MinHeartbeatSlack; otherwise from
	// MinHeartbeatSlack (a smaller one could
	// time out a live service whose heartbeat moved to another node when
	// its holder died) to MaxHeartbeatSlack (CheckHeartbeatSlack).
	HeartbeatSlack time.Duration
	// MaxTxnOps is the cluster's --max-txn-ops; 128 if zero, at least
	// MinTxnOps.
	MaxTxnOps int
	// PeerListen is the address (host:port; port 0 picks a free one) on
	// which this node takes copies of the heartbeat state other nodes
	// answer from memory (copies.go). Empty turns copies off: a service
	// whose client and holding node both die then times out at its stored
	// deadline, up to the slack late, instead of within two ReapIntervals
	// of its precise one.
	PeerListen string
	// PeerAdvertise is the host:port other nodes reach PeerListen at; the
	// listener's own address if empty.
	PeerAdvertise string
	// CopyLinger is how long a copy that finds the sender idle waits for
	// others to share its round trip to the peer, unless 16 are queued
	// sooner: a round trip costs both nodes tens of
	// microseconds of CPU whatever it carries, and a heartbeat answered
	// from memory waits for its copy. Copies that arrive while a batch is
	// on its way go in the next batch without waiting.
	// DefaultCopyLinger if zero; negative sends at once.
	CopyLinger time.Duration
	// MoveRate is how many heartbeats a second may move a tenant's
	// services to this node from other live nodes (a move writes etcd
	// about three times, and heartbeats count against no other limit),
	// or one for every MoveEvery of its live services if that is more,
	// after a burst of MoveBurst or its live services, whichever is
	// more. Past it a heartbeat gets a *store.RateLimitError.
	// DefaultMoveRate if zero; no limit if negative.
	MoveRate float64
	// MoveBurst: DefaultMoveBurst if not positive.
	MoveBurst int
	// WriteRate is how many writes a second (creates, updates and
	// deletes of services; sets and deletes of configuration values) a
	// tenant may commit through all the nodes together, after a burst of
	// WriteBurst: the budget is kept with the account in etcd, so that
	// adding nodes does not multiply what one account can write (and
	// etcd's history keep). Past it a write gets a *store.RateLimitError.
	// The server's own write limit (server.Config.WriteRate) bounds each
	// node's share before the store is asked. DefaultWriteRate if zero;
	// no limit if negative.
	WriteRate float64
	// WriteBurst: DefaultWriteBurst if not positive.
	WriteBurst int
}

// Store is the etcd store. Open it with Open.
type Store struct {
	cli     *clientv3.Client
	opts    Options
	log     *slog.Logger
	k       keys
	minter  *store.Minter
	tail    uint64
	metrics metrics
	nodeID  string
	started time.Time // when Open was called, as the node key shows it
	lease   nodeLease
	// outages are this node's spans without etcd, whose due services it
	// leaves to their grace, and gracedDue those services (outage.go).
	outages   outages
	showKick  chan struct{}  // wakes showOutages
	keyRev    atomic.Int64   // revision of this node's last write of its key
	spaceFull atomic.Bool    // etcd refused the last write for want of space
	clockWarn rate.Sometimes // says in the log that another node's clock is ahead
	gracedDue gracedDue

	mu      sync.RWMutex
	tenants map[string]*tenant

	hb          hbState
	tokenLeases tokenLeases

	// Copies of held heartbeat state (copies.go): those this node keeps
	// for others, its view of the nodes and its peer, and its senders'
	// queue (nil: copies are off).
	copies    copies
	peers     peers
	copyQueue *copyQueue
	// peerAEAD seals peer traffic (peerwire.go), with a key derived from
	// the registry's secret.
	peerAEAD cipher.AEAD
	peerAddr string
	// handBackTime (tests), if set, replaces handBackBudget's.
	handBackTime time.Duration
	// loseAnswer (tests) makes the next heartbeat batch fail after it
	// committed, as an answer lost on the way back would.
	loseAnswer atomic.Bool
	// late (tests) makes the next write it names fail at once, as one
	// that timed out, and sends its commit to the test, which runs it
	// later: a write that etcd committed after its caller gave up.
	late atomic.Pointer[lateWrite]
	// afterEventCount (tests) runs once in the event cap, after an
	// account's events were counted, before they are walked.
	afterEventCount atomic.Pointer[func()]

	// memberConns are connections to single members, for hedged
	// requests (hedge.go); hedgeTo (tests), if set, replaces them with
	// stand-ins that have a KV and no connection.
	memberConns memberConns
	hedgeTo     atomic.Pointer[[]*memberConn]

	ctx    context.Context // background work; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)
var _ store.Identity = (*Store)(nil)

// CheckHeartbeatSlack returns an error unless opts.HeartbeatSlack is 0
// (the default) or from MinHeartbeatSlack(opts) to MaxHeartbeatSlack. Open
// calls it first.
func CheckHeartbeatSlack(opts Options) error {
	least := MinHeartbeatSlack(opts)
	if d := opts.HeartbeatSlack; d != 0 && (d < least || d > MaxHeartbeatSlack) {
		return fmt.Errorf("heartbeat slack %v is not from %v to %v: a heartbeat that moves to another node when its holder dies may wait %v before it is written, and a smaller slack could time out its live service", d, least, MaxHeartbeatSlack, least)
	}
	return nil
}

// The defaults of Options.RequestTimeout and Options.NodeTTL.
const (
	DefaultRequestTimeout = 5 * time.Second
	DefaultNodeTTL        = 5 * time.Second
)

// MinTxnOps is the least Options.MaxTxnOps: a change takes a handful of
// operations (a timeout five and the account), and the batches of
// heartbeats and timeouts are sized to fit MaxTxnOps.
const MinTxnOps = 16

// MaxNodeTTL is the longest node TTL svcreg server takes: a node waiting
// for another's lease to expire waits at most that (or its own TTL, if
// longer).
const MaxNodeTTL = 30 * time.Second

// MinDefaultHeartbeatSlack is the least of the default heartbeat slack:
// twice a service's timeout, at least this and at least MinHeartbeatSlack.
const MinDefaultHeartbeatSlack = time.Minute

// DefaultHeartbeatLinger is Options.HeartbeatLinger's default.
const DefaultHeartbeatLinger = 20 * time.Millisecond

// DefaultCopyLinger is Options.CopyLinger's default.
const DefaultCopyLinger = 2 * time.Millisecond

// Defaults of Options.MoveRate and MoveBurst: the write limit's.
const (
	DefaultMoveRate  = store.DefaultWriteRate
	DefaultMoveBurst = store.DefaultWriteBurst
)

// Defaults of Options.WriteRate and WriteBurst: the server's.
const (
	DefaultWriteRate  = store.DefaultWriteRate
	DefaultWriteBurst = store.DefaultWriteBurst
)

// MoveEvery is how many live services of a tenant earn it one move a
// second beyond MoveRate. The official clients heartbeat every 1.8 s or
// more on average (spec §11.2: 1.8 s at the shortest timeout, 3 s; 2.0 s
// at 9 s, jittered), so even a balancer that sends a service's heartbeats
// to two nodes in turn brings each one move every 3.6 s a service at most,
// on average; the burst takes the jitter.
const MoveEvery = 3

// MaxHeartbeatSlack is the largest HeartbeatSlack Open takes.
const MaxHeartbeatSlack = 24 * time.Hour

// MinHeartbeatSlack is the least HeartbeatSlack that is safe with opts. A
// heartbeat that reaches another node after the service's holder died
// waits for the dead node's lease to expire (NodeTTL) and then for its
// etcd calls (RequestTimeout each) before it is written; if the stored
// deadline, the token's plus the slack, passed meanwhile, a reaper could
// time out the service although its client heartbeated in time. A holder
// without a peer's copy of a heartbeat answers it from memory only while
// the stored deadline is this much past its token's, for the same reason.
func MinHeartbeatSlack(opts Options) time.Duration {
	return time.Duration(leaseSeconds(ttlOrDefault(opts)))*time.Second + 2*timeoutOrDefault(opts)
}

// leaseSeconds is the TTL in whole seconds that a node asks etcd for, for
// a lease of ttl: rounded up.
func leaseSeconds(ttl time.Duration) int64 { return int64((ttl + time.Second - 1) / time.Second) }

func ttlOrDefault(opts Options) time.Duration {
	if opts.NodeTTL <= 0 {
		return DefaultNodeTTL
	}
	return opts.NodeTTL
}

func timeoutOrDefault(opts Options) time.Duration {
	if opts.RequestTimeout <= 0 {
		return DefaultRequestTimeout
	}
	return opts.RequestTimeout
}

// Open opens the store on cli, creating the shared secrets on first use. It
// registers this node; if no other node is alive (the whole registry was
// down), it first gives every live service its full timeout again (design
// item 10). The caller keeps cli and closes it after Close. Leave cli's
// AutoSyncInterval zero: the store keeps its endpoints in step with etcd's
// membership itself, once a minute.
func Open(ctx context.Context, cli *clientv3.Client, opts Options) (*Store, error) {
	if err := CheckHeartbeatSlack(opts); err != nil {
		return nil, fmt.Errorf("etcd store: %w", err)
	}
	if opts.MaxTxnOps != 0 && opts.MaxTxnOps < MinTxnOps {
		return nil, fmt.Errorf("etcd store: MaxTxnOps %d: want at least %d (etcd's --max-txn-ops, 128 by default)", opts.MaxTxnOps, MinTxnOps)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	c := store.Options{Clock: opts.Clock, Logger: opts.Logger, DefaultLimits: opts.DefaultLimits, Retention: opts.Retention, MaxEvents: opts.MaxEvents,
		MaxEventBytes: opts.MaxEventBytes}.WithDefaults()
	opts.Clock, opts.Logger, opts.DefaultLimits, opts.Retention, opts.MaxEvents, opts.MaxEventBytes = c.Clock, c.Logger, c.DefaultLimits, c.Retention, c.MaxEvents, c.MaxEventBytes
	if opts.ReapInterval == 0 {
		opts.ReapInterval = 500 * time.Millisecond
	}
	if opts.EventCapInterval <= 0 {
		opts.EventCapInterval = 5 * time.Second
	}
	opts.RequestTimeout, opts.NodeTTL = timeoutOrDefault(opts), ttlOrDefault(opts)
	if opts.MaxTxnOps <= 0 {
		opts.MaxTxnOps = 128
	}
	if opts.HeartbeatBatch <= 0 {
		opts.HeartbeatBatch = 40
	}
	opts.HeartbeatBatch = min(opts.HeartbeatBatch, (opts.MaxTxnOps-2)/3)
	if opts.HeartbeatCommitters <= 0 {
		opts.HeartbeatCommitters = 4
	}
	if opts.HeartbeatLinger == 0 {
		opts.HeartbeatLinger = DefaultHeartbeatLinger
	}
	opts.HeartbeatLinger = min(opts.HeartbeatLinger, opts.RequestTimeout/2)
	if opts.MoveRate == 0 {
		opts.MoveRate = DefaultMoveRate
	}
	if opts.MoveBurst <= 0 {
		opts.MoveBurst = DefaultMoveBurst
	}
	if opts.WriteRate == 0 {
		opts.WriteRate = DefaultWriteRate
	}
	if opts.WriteBurst <= 0 {
		opts.WriteBurst = DefaultWriteBurst
	}
	if opts.CopyLinger == 0 {
		opts.CopyLinger = DefaultCopyLinger
	}
	var id [8]byte
	rand.Read(id[:])
	s := &Store{
		cli:     cli,
		opts:    opts,
		log:     opts.Logger,
		k:       keys{p: opts.Prefix},
		tenants: map[string]*tenant{},
		nodeID:  hex.EncodeToString(id[:]),

		clockWarn: rate.Sometimes{Interval: time.Minute},
	}
	s.started = s.now()
	s.showKick = make(chan struct{}, 1)
	s.memberConns.slots = make(chan struct{}, maxHedges)
	s.metrics = newMetrics(opts.Registerer, s.hasPeer)
	s.hb.init()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.loadSecrets(ctx); err != nil {
		s.cancel()
		if isNoSpace(err) {
			return nil, fmt.Errorf("%w (etcd's database reached its space quota: compact, defragment and disarm it, as \"etcd's space\" in docs/etcd.md says, then start the node again)", err)
		}
		return nil, err
	}
	if opts.AuthMode != "" {
		// Before the node joins, or takes copies: a node of the other
		// mode takes no part in the cluster.
		if err := store.CheckAuthMode(ctx, s, opts.AuthMode); err != nil {
			s.cancel()
			return nil, err
		}
	}
	addr, err := s.startPeer()
	if err != nil {
		s.shutdown()
		return nil, err
	}
	s.peerAddr = addr
	// The watch starts before anything is read, so that no commit after
	// the first read is missed.
	watching := make(chan struct{})
	s.wg.Go(func() { s.watchAccounts(watching) })
	wait := time.NewTimer(opts.RequestTimeout)
	defer wait.Stop()
	select {
	case <-watching:
	case <-wait.C:
		s.shutdown()
		return nil, fmt.Errorf("%w: etcd: watch the accounts: no answer in %v", store.ErrUnavailable, opts.RequestTimeout)
	case <-ctx.Done():
		s.shutdown()
		return nil, ctx.Err()
	}
	if err := s.join(ctx); err != nil {
		s.shutdown()
		return nil, err
	}
	s.wg.Go(s.commitHeartbeats)
	s.wg.Go(s.watchReleases)
	s.wg.Go(s.watchNodes)
	if s.copyQueue != nil {
		s.wg.Go(s.watchCopiedReleases)
	}
	return s, nil
}

func (s *Store) now() time.Time { return s.opts.Clock() }

// Node returns this node's id, new at each Open, by which the other nodes'
// logs name it, and the address it takes copies at ("" with copies off).
func (s *Store) Node() (id, peerAddr string) { return s.nodeID, s.peerAddr }

// loadSecrets reads the token MAC key and the event id tail, creating them
// if this is the first node ever.
func (s *Store) loadSecrets(ctx context.Context) error {
	secret := make([]byte, 32)
	rand.Read(secret)
	tail := binary.BigEndian.AppendUint64(nil, randUint64())
	resp, err := s.txn(ctx, "create secrets",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.k.secret()), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(s.k.secret(), string(secret)), clientv3.OpPut(s.k.tail(), string(tail))},
		[]clientv3.Op{clientv3.OpGet(s.k.secret()), clientv3.OpGet(s.k.tail())})
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		sk, tk := first(resp.Responses[0]), first(resp.Responses[1])
		if sk == nil || tk == nil || len(tk.Value) != 8 {
			return fmt.Errorf("etcd store under %q: secrets are missing or damaged", s.opts.Prefix)
		}
		secret, tail = sk.Value, tk.Value
	}
	s.minter = store.NewMinter(secret)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("svcreg etcd store: heartbeat copies between nodes, sealed"))
	s.peerAEAD, err = chacha20poly1305.NewX(m.Sum(nil))
	if err != nil {
		return err
	}
	s.tail = binary.BigEndian.Uint64(tail)
	return nil
}

func randUint64() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// Ping implements store.Store: a linearizable read, which needs a quorum.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.txn(ctx, "ping", nil, []clientv3.Op{clientv3.OpGet(s.k.secret(), clientv3.WithCountOnly())}, nil)
	return err
}

// Close stops this node's background work (heartbeat batches being
// committed finish and are answered) and removes this node's liveness key.
// It does not close the client.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.shutdown() })
	return err
}

func (s *Store) shutdown() error {
	s.cancel()
	s.wg.Wait()
	defer s.closeMembers()
	lease, _ := s.lease.get()
	if lease == 0 {
		return nil
	}
	// The services this node holds go back to etcd with their exact
	// state, so a graceful stop loses no deadline's precision. What is
	// not back within the budget stays held by this node, whose key goes
	// below: the other nodes take those services on from their stored
	// state (or its peer's copies) as from a node that died.
	rctx, rcancel := context.WithTimeout(context.Background(), s.handBackBudget())
	if back, left, err := s.releaseAll(rctx); err != nil {
		s.log.Warn("hand back held services", "handed_back", back, "left", left, "err", err)
	}
	rcancel()
	if err := s.revoke(lease); err != nil {
		return s.fail(context.Background(), "leave the cluster", err)
	}
	return nil
}

// Run runs the reaper, event retention and the heartbeat cache sweep until
// ctx is done.
func (s *Store) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	loop := func(name string, every time.Duration, fn func(context.Context) error) {
		wg.Go(func() {
			var failing bool
			var logged time.Time
			store.RunEvery(ctx, every, func() {
				err := fn(ctx)
				switch {
				case ctx.Err() != nil:
				case err != nil && (!failing || time.Since(logged) > time.Minute):
					// While etcd is out of reach every run fails: say so
					// once a minute, not every run.
					s.log.Error("store background work failed", "job", name, "err", err)
					failing, logged = true, time.Now()
				case err == nil && failing:
					s.log.Info("store background work recovered", "job", name)
					failing = false
				}
			})
		})
	}
	if s.opts.ReapInterval > 0 {
		loop("reaper", s.opts.ReapInterval, s.reap)
	}
	retentionEvery := min(time.Hour, max(s.opts.Retention/16, time.Second))
	loop("retention", retentionEvery, s.prune)
	if s.opts.MaxEvents > 0 || s.opts.MaxEventBytes > 0 {
		loop("event cap", s.opts.EventCapInterval, s.capEvents)
	}
	loop("etcd members", time.Minute, s.syncEndpoints)
	loop("heartbeat cache", time.Minute, func(context.Context) error { s.hb.sweep(s.now()); return nil })
	wg.Wait()
	return nil
}

// txn runs one etcd transaction, bounded by RequestTimeout.
func (s *Store) txn(ctx context.Context, what string, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	return s.txnWithin(ctx, s.opts.RequestTimeout, notHedged, what, cmps, then, els)
}

// again runs a write that changes nothing when it commits a second time
// (a put of the same value, a delete), hedged: bounded by RequestTimeout,
// sent again to other members while it has no answer (hedge.go).
func (s *Store) again(ctx context.Context, what string, cmps []clientv3.Cmp, then ...clientv3.Op) error {
	_, err := s.txnWithin(ctx, s.opts.RequestTimeout, hedged, what, cmps, then, nil)
	return err
}

// txnWithin is txn bounded by timeout instead, and sent again to other
// members while it has no answer unless notHedged (hedge.go). Running out of
// timeout is unavailability (ErrUnavailable), as for RequestTimeout; only
// ctx's own end is the caller's.
func (s *Store) txnWithin(ctx context.Context, timeout time.Duration, as hedging, what string, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	resp, _, err := s.txnSends(ctx, timeout, as, what, cmps, then, els)
	return resp, err
}

// txnSends is txnWithin, and how many times it sent the transaction
// (more than once only if hedged). A reaper pass's calls are watched for
// blips (blip.go).
func (s *Store) txnSends(ctx context.Context, timeout time.Duration, as hedging, what string, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, int, error) {
	if done := s.reapCall(ctx); done != nil {
		resp, sends, err := s.txnCall(ctx, timeout, as, what, cmps, then, els)
		done(err)
		return resp, sends, err
	}
	return s.txnCall(ctx, timeout, as, what, cmps, then, els)
}

// txnCall is txnSends, unwatched (see reapCall).
func (s *Store) txnCall(ctx context.Context, timeout time.Duration, as hedging, what string, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, int, error) {
	if l := s.late.Load(); l != nil && l.what == what && s.late.CompareAndSwap(l, nil) {
		txn := s.cli.Txn(s.ctx).If(cmps...).Then(then...).Else(els...)
		l.commit <- func() (bool, error) {
			resp, err := txn.Commit()
			return err == nil && resp.Succeeded, err
		}
		return nil, 1, s.fail(ctx, what, context.DeadlineExceeded)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var resp *clientv3.TxnResponse
	sends, err := 1, error(nil)
	if as != notHedged {
		resp, sends, err = s.hedgedTxn(cctx, as, cmps, then, els)
	} else {
		resp, err = s.cli.Txn(cctx).If(cmps...).Then(then...).Else(els...).Commit()
	}
	s.noteSpace(then, err)
	if err != nil {
		return nil, sends, s.fail(ctx, what, err)
	}
	return resp, sends, nil
}

// noteSpace follows whether etcd refuses writes for want of space (its
// NOSPACE alarm): on from a write refused so, off from a write that
// succeeds, each change logged.
func (s *Store) noteSpace(then []clientv3.Op, err error) {
	full := isNoSpace(err)
	// The common case, a write that succeeds while etcd has space, reads
	// one flag and no more.
	if full == s.spaceFull.Load() || !full && (err != nil || !slices.ContainsFunc(then, func(op clientv3.Op) bool { return op.IsPut() || op.IsTxn() })) {
		return
	}
	if s.spaceFull.Swap(full) == full {
		return
	}
	if full {
		s.metrics.spaceFull.Set(1)
		s.log.Error("etcd's database reached its space quota: every write fails (every account's writes, logins and timeouts) until an operator compacts, defragments and disarms it; see \"etcd's space\" in docs/etcd.md", "err", err)
		return
	}
	s.metrics.spaceFull.Set(0)
	s.log.Info("etcd takes writes again")
}

// isNoSpace reports whether err is etcd refusing a write for want of
// space.
func isNoSpace(err error) bool {
	return errors.Is(err, rpctypes.ErrNoSpace) // the client turns etcd's gRPC error into it
}

// lateWrite is a write held back by a test (Store.late).
type lateWrite struct {
	what   string
	commit chan func() (succeeded bool, err error)
}

// read runs read-only operations at one revision (a linearizable read),
// hedged.
func (s *Store) read(ctx context.Context, what string, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	return s.txnWithin(ctx, s.opts.RequestTimeout, hedged, what, nil, ops, nil)
}

// errCompacted is what a read at a revision etcd compacted away returns.
var errCompacted = errors.New("revision compacted")

// fail turns an etcd error into the store's: the caller's own cancellation
// stays itself; a request etcd refused as malformed is a plain error (a bug
// here); anything else — no quorum, no connection, a timeout, a full
// backend — is store.ErrUnavailable.
func (s *Store) fail(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("etcd: %s: %w", what, ctx.Err())
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("etcd: %s: %w", what, errCompacted)
	}
	if grpcCode(err) == codes.InvalidArgument {
		return fmt.Errorf("etcd: %s: %w", what, err)
	}
	return fmt.Errorf("%w: etcd: %s: %w", store.ErrUnavailable, what, err)
}

// grpcCode is the gRPC code of an error from the etcd client.
func grpcCode(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return codes.Unknown
}

// putIfAbsent puts value at key unless the key exists, in one hedged
// transaction (a send that committed is found by the others' read): it
// returns the revision of the put if this call made it, else the key as
// stored (nil if it vanished since).
func (s *Store) putIfAbsent(ctx context.Context, what, key, value string) (created int64, stored *mvccpb.KeyValue, err error) {
	resp, err := s.txnWithin(ctx, s.opts.RequestTimeout, hedged, what,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, value)},
		[]clientv3.Op{clientv3.OpGet(key)})
	if err != nil {
		return 0, nil, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil, nil
	}
	return 0, first(resp.Responses[0]), nil
}

// first returns the first key of a range response, or nil.
func first(r *pb.ResponseOp) *mvccpb.KeyValue {
	rr := r.GetResponseRange()
	if rr == nil || len(rr.Kvs) == 0 {
		return nil
	}
	return rr.Kvs[0]
}

// decodeAccount decodes an account key read from etcd.
func decodeAccount(tenant string, kv *mvccpb.KeyValue) (store.AccountRecord, error) {
	var a store.AccountRecord
	if kv == nil {
		return a, fmt.Errorf("account %s is missing", tenant)
	}
	if err := json.Unmarshal(kv.Value, &a); err != nil {
		return a, fmt.Errorf("account %s: %w", tenant, err)
	}
	return a, nil
}

// tenant is what this node keeps of an account.
type tenant struct {
	id string

	// wmu serialises this node's writes to the tenant, so that they do not
	// conflict with each other in etcd; other nodes' writes still may.
	// Timeouts take it ahead of the writes waiting (store.WriteLock).
	wmu store.WriteLock

	mu      sync.Mutex
	acct    store.AccountRecord // as of acctRev; Head may lag other nodes' commits
	acctRev int64
	changed chan struct{} // closed and replaced when the account changes
	// appended says this node appended events since the event cap last
	// looked at the tenant.
	appended atomic.Bool
	// moves is the tenant's budget of heartbeats that move a service to
	// this node (spendMove); nil until the first. Under mu.
	moves *rate.Limiter
}

// observe records an account value seen at mod revision rev (from a read,
// a commit or the watch) and wakes the tenant's long-polls if it is new.
func (t *tenant) observe(acct store.AccountRecord, rev int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rev <= t.acctRev {
		return
	}
	t.acct, t.acctRev = acct, rev
	close(t.changed)
	t.changed = make(chan struct{})
}

// wake closes the tenant's channel without news: the watch may have missed
// a commit.
func (t *tenant) wake() {
	t.mu.Lock()
	defer t.mu.Unlock()
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *tenant) account() (store.AccountRecord, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acct, t.acctRev
}

// knownTenant returns the node's state of a tenant, creating it (without
// an account) if needed.
func (s *Store) knownTenant(id string) *tenant {
	s.mu.RLock()
	t := s.tenants[id]
	s.mu.RUnlock()
	if t != nil {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[id]; t != nil {
		return t
	}
	t = &tenant{id: id, changed: make(chan struct{})}
	s.tenants[id] = t
	return t
}

func (s *Store) existingTenant(id string) *tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tenants[id]
}

func (s *Store) allTenants() []*tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*tenant, 0, len(s.tenants))
	for _, t := range s.tenants {
		out = append(out, t)
	}
	return out
}

// tenantFor returns the tenant's state, reading its account, or creating it
// on first use (spec §3.4), if this node has not seen it yet.
func (s *Store) tenantFor(ctx context.Context, id string) (*tenant, error) {
	t := s.knownTenant(id)
	if _, rev := t.account(); rev != 0 {
		return t, nil
	}
	acct := store.AccountRecord{CreatedAt: s.now().UnixMilli(), Limits: s.opts.DefaultLimits, BytesCounted: true}
	raw, err := json.Marshal(acct)
	if err != nil {
		return nil, err
	}
	key := s.k.account(id)
	// Hedged: whichever send commits, or another node's create, the
	// account is then the one in etcd.
	rev, kv, err := s.putIfAbsent(ctx, "create account", key, string(raw))
	if err != nil && isNoSpace(err) {
		// etcd refuses the transaction for its put, even where the
		// account exists and it would put nothing: read the account,
		// so that reads go on while the quota is reached.
		resp, rerr := s.read(ctx, "read account", clientv3.OpGet(key))
		if rerr != nil {
			return nil, rerr
		}
		if kv = first(resp.Responses[0]); kv == nil {
			return nil, err
		}
		rev, err = 0, nil
	}
	if err != nil {
		return nil, err
	}
	if rev != 0 {
		t.observe(acct, rev)
		return t, nil
	}
	if kv == nil {
		return nil, fmt.Errorf("account %s: its key vanished as it was created", id)
	}
	if err := json.Unmarshal(kv.Value, &acct); err != nil {
		return nil, fmt.Errorf("account %s: %w", id, err)
	}
	t.observe(acct, kv.ModRevision)
	return t, nil
}

// Account implements store.Store. Head is the newest this node has seen;
// see Head.
func (s *Store) Account(ctx context.Context, tenant string) (store.Account, error) {
	t, err := s.tenantFor(ctx, tenant)
	if err != nil {
		return store.Account{}, err
	}
	acct, _ := t.account()
	return acct.Account(tenant), nil
}

// Head implements store.Store with a linearizable read of the account.
func (s *Store) Head(ctx context.Context, tenant string) (timeuuid.UUID, error) {
	t, err := s.tenantFor(ctx, tenant)
	if err != nil {
		return timeuuid.UUID{}, err
	}
	resp, err := s.read(ctx, "read account", clientv3.OpGet(s.k.account(tenant)))
	if err != nil {
		return timeuuid.UUID{}, err
	}
	kv := first(resp.Responses[0])
	acct, err := decodeAccount(tenant, kv)
	if err != nil {
		return timeuuid.UUID{}, err
	}
	t.observe(acct, kv.ModRevision)
	return acct.Head, nil
}

// Changed implements store.Store: the channel is closed when this node
// commits a change to the account or its watch sees another node's.
func (s *Store) Changed(ctx context.Context, tenant string) (<-chan struct{}, error) {
	t := s.knownTenant(tenant)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed, nil
}

// writer is one optimistic write transaction on one tenant.
type writer struct {
	s    *Store
	t    *tenant
	now  time.Time
	acct store.AccountRecord
	// got holds the keys the read phase asked for (nil if missing).
	got map[string]*mvccpb.KeyValue
	// cmps are the conditions besides the account's mod revision; ops
	// the writes besides the account.
	cmps []clientv3.Cmp
	ops  []clientv3.Op
	// acctDirty asks for the account to be written even without events.
	acctDirty bool
	events    []store.Event
	// clockAhead is how far past writeClockSkew ahead of w.now spendWrite
	// found the budget stamped (0 if not): counted once a write, by
	// writeTxn, not once an attempt.
	clockAhead time.Duration
}

// appendEvent adds an event with the next id in commit order, and counts
// its bytes with the account's.
func (w *writer) appendEvent(build func(id timeuuid.UUID) store.Event) {
	id := w.acct.NextEventID(w.now, w.s.tail)
	ev := build(id)
	raw := store.EncodeStoredEvent(ev)
	w.ops = append(w.ops, clientv3.OpPut(w.s.k.event(w.t.id, id), string(raw)))
	if !w.acct.BytesCounted {
		// Made before the store counted: the events so far are not.
		w.acct.BytesCounted, w.acct.BytesFrom, w.acct.EventBytes = true, w.acct.Head, 0
	}
	w.acct.Head = id
	w.acct.EventBytes += int64(len(raw))
	w.events = append(w.events, ev)
}

func (w *writer) put(key string, v any) error {
	raw, err := store.MarshalJSON(v)
	if err != nil {
		return err
	}
	w.ops = append(w.ops, clientv3.OpPut(key, string(raw)))
	return nil
}

func (w *writer) del(key string) { w.ops = append(w.ops, clientv3.OpDelete(key)) }

// getJSON decodes the key the read phase got into v and reports whether it
// existed.
func (w *writer) getJSON(key string, v any) (bool, error) {
	kv := w.got[key]
	if kv == nil {
		return false, nil
	}
	return true, json.Unmarshal(kv.Value, v)
}

// maxAttempts bounds how often write starts over because another node
// committed first; each node serialises its own writes to a tenant, so
// only other nodes' writes can beat it.
const maxAttempts = 100

// write runs an optimistic transaction on t: it reads the account and the
// keys in reads at one revision, lets fn decide (fn's error aborts without
// a write), and commits fn's writes, the events and the account if the
// account's mod revision and fn's conditions still hold; else it starts
// over. The caller holds t.wmu. It returns the commit's revision, 0 if
// fn wrote nothing.
func (s *Store) write(ctx context.Context, t *tenant, what string, reads []string, fn func(w *writer) error) (int64, error) {
	return s.writeTxn(ctx, t, what, false, reads, fn)
}

// clientWrite is write for a client's write (spec §7: a create, update or
// delete of a service, a set or delete of a configuration value): one
// that writes anything is paid for from the tenant's write budget, in the
// same transaction (spendWrite).
func (s *Store) clientWrite(ctx context.Context, t *tenant, what string, reads []string, fn func(w *writer) error) (int64, error) {
	return s.writeTxn(ctx, t, what, true, reads, fn)
}

// spendWrite takes one write from the tenant's budget (Options.WriteRate),
// a token bucket kept with the account, or says how long until one is
// allowed. The bucket fills by the time since the last write that spent
// from it, by the clock of the node that spends: one whose clock is
// behind the last spender's earns nothing until it catches up (up to
// writeClockSkew), one ahead earns its lead once. A time further ahead
// than that is a wrong clock's, and is not waited for.
func (w *writer) spendWrite() error {
	if ahead := time.Duration(w.acct.WritesAt-w.now.UnixMilli()) * time.Millisecond; ahead > writeClockSkew && w.s.opts.WriteRate >= 0 {
		w.clockAhead = ahead
	}
	tokens, now, at, err := w.s.writeBudget(w.acct, w.now)
	if err != nil || w.s.opts.WriteRate < 0 {
		return err
	}
	w.acct.WriteTokens, w.acct.WritesAt = tokens-1, max(now, at)
	return nil
}

// writeBudget is what spendWrite finds in the bucket of acct at now (and
// the times it goes by, in Unix ms), or its refusal when there is not one
// write in it; nothing is spent.
func (s *Store) writeBudget(acct store.AccountRecord, at0 time.Time) (tokens float64, now, at int64, err error) {
	r, burst := s.opts.WriteRate, float64(s.opts.WriteBurst)
	if r < 0 {
		return burst, 0, 0, nil
	}
	now, at = at0.UnixMilli(), acct.WritesAt
	if at > now+writeClockSkew.Milliseconds() {
		at = now
	}
	tokens = burst
	if at != 0 {
		earned := float64(max(now-at, 0)) / 1000 * r
		tokens = min(burst, acct.WriteTokens+earned)
	}
	if tokens < 1 {
		s.metrics.writesRefused.Inc()
		return tokens, now, at, &store.RateLimitError{
			Wait:  time.Duration((1-tokens)/r*float64(time.Second)) + time.Duration(max(at-now, 0))*time.Millisecond,
			Limit: fmt.Sprintf("Limit of %g write requests per second, in bursts of up to %d, through all the registry's server nodes together, has been reached", r, s.opts.WriteBurst),
		}
	}
	return tokens, now, at, nil
}

// refuseEmptyBudget refuses a write of t's before it asks another node for
// anything (a hand-over writes to etcd too) when the budget, as this node
// last saw the account, has no write in it: a later look only finds fewer
// (other nodes spend), so none is refused that the write itself would
// take.
func (s *Store) refuseEmptyBudget(t *tenant) error {
	t.mu.Lock()
	acct := t.acct
	t.mu.Unlock()
	_, _, _, err := s.writeBudget(acct, s.now())
	return err
}

// clockBehind notes that an account's write budget is stamped by a clock
// ahead of this node's by more than writeClockSkew (another node's, or
// this one's before it stepped back): counted,
// and said in the log at most once a minute. Until the clocks agree, a
// client whose writes alternate between such nodes refills the budget at
// the fast node's next write (each node's own write limit still holds),
// and deadlines are enforced by clocks that disagree.
func (s *Store) clockBehind(by time.Duration) {
	s.metrics.clockBehind.Inc()
	s.clockWarn.Do(func() {
		s.log.Warn("an account's write budget is stamped ahead of this node's clock: another node's clock is ahead (or this one stepped back); the nodes' clocks must agree within well under a second (NTP), else the write budget is not kept through the nodes together, nor timeouts within a second", "ahead_by", by.Round(time.Millisecond))
	})
}

// writeClockSkew is how far ahead of a node's clock the write budget's
// last spending may be and still be waited for (spendWrite).
const writeClockSkew = time.Second

func (s *Store) writeTxn(ctx context.Context, t *tenant, what string, spends bool, reads []string, fn func(w *writer) error) (int64, error) {
	acctKey := s.k.account(t.id)
	// What the last attempt's spendWrite found, reported once the write
	// is done (committed or refused): a write retried after other nodes'
	// is one write.
	var clockAhead time.Duration
	defer func() {
		if clockAhead > 0 {
			s.clockBehind(clockAhead)
		}
	}()
	for attempt := 0; ; attempt++ {
		clockAhead = 0
		if attempt == maxAttempts {
			return 0, fmt.Errorf("%w: %s: other nodes' writes to tenant %s won %d times in a row", store.ErrUnavailable, what, t.id, attempt)
		}
		if attempt > 0 {
			s.metrics.conflicts.Inc()
			if attempt > 2 {
				if err := retry.Sleep(ctx, time.Duration(mrand.Int64N(int64(attempt)*int64(time.Millisecond)))); err != nil {
					return 0, err
				}
			}
		}
		ops := make([]clientv3.Op, 0, 1+len(reads))
		ops = append(ops, clientv3.OpGet(acctKey))
		for _, k := range reads {
			ops = append(ops, clientv3.OpGet(k))
		}
		resp, err := s.read(ctx, what, ops...)
		if err != nil {
			return 0, err
		}
		akv := first(resp.Responses[0])
		acct, err := decodeAccount(t.id, akv)
		if err != nil {
			return 0, err
		}
		w := &writer{s: s, t: t, now: s.now(), acct: acct, got: map[string]*mvccpb.KeyValue{}}
		t.observe(w.acct, akv.ModRevision)
		for i, k := range reads {
			w.got[k] = first(resp.Responses[1+i])
		}
		if err := fn(w); err != nil {
			return 0, err
		}
		if len(w.ops) == 0 && len(w.events) == 0 && !w.acctDirty {
			return 0, nil
		}
		if spends {
			err := w.spendWrite()
			clockAhead = w.clockAhead
			if err != nil {
				return 0, err
			}
			w.acctDirty = true
		}
		acctChanged := len(w.events) > 0 || w.acctDirty
		var rawAcct []byte
		if acctChanged {
			// The nonce makes this attempt's account value its own.
			if rawAcct, err = withNonce(w.acct); err != nil {
				return 0, err
			}
			w.ops = append(w.ops, clientv3.OpPut(acctKey, string(rawAcct)))
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(acctKey), "=", akv.ModRevision)}, w.cmps...)
		// A write with events moves the account, so at most one of its
		// sends commits: it may be hedged (hedge.go).
		as := notHedged
		if len(w.events) > 0 {
			as = hedged
		}
		start := time.Now()
		cresp, sends, err := s.txnSends(ctx, s.opts.RequestTimeout, as, what, cmps, w.ops, nil)
		if err != nil {
			return 0, err
		}
		rev := cresp.Header.Revision
		if !cresp.Succeeded {
			if sends == 1 {
				continue // another node's write
			}
			// Another node's write, or this one's other send.
			mine, err := s.committedAs(ctx, what, t.id, w.events[0].ID, acctKey, rawAcct)
			if err != nil {
				return 0, err
			}
			if mine == 0 {
				continue
			}
			rev = mine
		}
		s.metrics.Committed(time.Since(start).Seconds(), w.events)
		if len(w.events) > 0 {
			t.appended.Store(true)
		}
		if acctChanged {
			t.observe(w.acct, rev)
		}
		return rev, nil
	}
}

// withNonce encodes an account as Store.write writes it: with a nonce of
// the attempt ("write"), which no other write's value has; decoding an
// account ignores it.
func withNonce(acct store.AccountRecord) ([]byte, error) {
	raw, err := json.Marshal(acct)
	if err != nil {
		return nil, err
	}
	if len(raw) < 2 || raw[len(raw)-1] != '}' {
		return nil, fmt.Errorf("account encoded as %q", raw)
	}
	sep := ","
	if len(raw) == 2 {
		sep = ""
	}
	return fmt.Appendf(raw[:len(raw)-1], `%s"write":"%016x"}`, sep, mrand.Uint64()), nil
}

// committedAs returns the revision at which a write of tenant t that put
// the event eventID and rawAcct at acctKey committed, or 0 if it did not
// (yet): the event's key may be another node's, whose events got the same
// id, but the account's value at the event's revision is this write's
// only if it committed it. An event that is gone, deleted since by the
// event cap or retention (the account's pruned mark is at or past it),
// may have been this write's: whether it committed is then not known.
func (s *Store) committedAs(ctx context.Context, what, t string, eventID timeuuid.UUID, acctKey string, rawAcct []byte) (int64, error) {
	r, err := s.read(ctx, what, clientv3.OpGet(s.k.event(t, eventID), clientv3.WithKeysOnly()), clientv3.OpGet(acctKey))
	if err != nil {
		return 0, err
	}
	ev := first(r.Responses[0])
	if ev == nil {
		if akv := first(r.Responses[1]); akv != nil {
			acct, err := decodeAccount(t, akv)
			if err != nil {
				return 0, err
			}
			if timeuuid.Compare(acct.Pruned, eventID) >= 0 {
				return 0, fmt.Errorf("%w: %s: its event was deleted (event cap or retention) before the write could tell whether it committed", store.ErrUnavailable, what)
			}
		}
		return 0, nil
	}
	r, err = s.read(ctx, what, clientv3.OpGet(acctKey, clientv3.WithRev(ev.ModRevision)))
	if errors.Is(err, errCompacted) {
		// Compacted at once: whether this write committed is not known,
		// as when its answer is lost.
		return 0, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	if err != nil {
		return 0, err
	}
	if a := first(r.Responses[0]); a != nil && a.ModRevision == ev.ModRevision && bytes.Equal(a.Value, rawAcct) {
		return ev.ModRevision, nil
	}
	return 0, nil
}
