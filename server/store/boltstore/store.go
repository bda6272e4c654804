// Package boltstore is the embedded store: one bbolt file holds accounts,
// services, configuration, the events feed and the identity tokens.
//
// Every state change and its event are written in one transaction, synced
// before the call returns, so an acknowledged write survives kill -9.
// Heartbeats are the exception that keeps them cheap: they run in memory and
// a checkpoint writes the heartbeat state of the services that changed about
// once a second. Tokens carry a MAC (see store.Minter), so after a restart
// the store still accepts every token it handed out, checkpointed or not, and
// gives every live service its full timeout again.
package boltstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/svcreg/svcreg/internal/fsync"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// FileName is the name of the database file under the data directory.
const FileName = "svcreg.db"

// Bucket names. Each tenant has a bucket under bTenants holding the key
// kAccount and the buckets bServices, bHeartbeats, bConfig and bEvents.
var (
	bMeta       = []byte("meta")
	bTenants    = []byte("tenants")
	bTokens     = []byte("tokens")
	bDevTenants = []byte("dev-tenants")
	bRevoked    = []byte("user-revocations")
	bServices   = []byte("services")
	bHeartbeats = []byte("heartbeats")
	bConfig     = []byte("config")
	bEvents     = []byte("events")
	kAccount    = []byte("account")
	kSecret     = []byte("token-secret")
	kEventTail  = []byte("event-tail")
	kAuthMode   = []byte("auth-mode")
)

// Options configure a Store. The zero value is usable.
type Options struct {
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
	// AuthMode, if not empty, is recorded as the registry's (AuthMode)
	// when Open starts; Open fails with a *store.AuthModeError if the
	// other is recorded.
	AuthMode string
	// MaxEvents is the most events an account keeps: each write that
	// appends past it deletes the oldest, as retention does (a marker before
	// them gets ErrMarkerExpired). store.DefaultMaxEvents if zero; negative keeps
	// every event for the whole retention window.
	MaxEvents int
	// MaxEventBytes caps the bytes of an account's events in the same way;
	// DefaultMaxEventBytes if zero, no cap if negative.
	MaxEventBytes int64
	// ReapInterval is how often the reaper looks for services past their
	// deadline; 250ms if zero. Negative turns the reaper off, leaving only
	// the lazy rectification on reads (spec §8.4).
	ReapInterval time.Duration
	// CheckpointInterval is how often heartbeat state is written; 1s if zero.
	CheckpointInterval time.Duration
	// BackupSocket is the path of the unix socket on which Run hands out
	// backups (see Backup); none if empty.
	BackupSocket string
}

// DefaultMaxEventBytes is the most bytes of events an account keeps by
// default (store.DefaultMaxEventBytes).
const DefaultMaxEventBytes = store.DefaultMaxEventBytes

// Store is the embedded store. Open it with Open.
type Store struct {
	db      *bolt.DB
	opts    Options
	log     *slog.Logger
	minter  *store.Minter
	tail    uint64 // the 62 bits after the time in this store's event ids
	metrics metrics

	mu      sync.RWMutex
	tenants map[string]*tenant
}

var _ store.Store = (*Store)(nil)
var _ store.Identity = (*Store)(nil)

// Open opens (or creates) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	c := store.Options{Clock: opts.Clock, Logger: opts.Logger, DefaultLimits: opts.DefaultLimits, Retention: opts.Retention, MaxEvents: opts.MaxEvents,
		MaxEventBytes: opts.MaxEventBytes}.WithDefaults()
	opts.Clock, opts.Logger, opts.DefaultLimits, opts.Retention, opts.MaxEvents, opts.MaxEventBytes = c.Clock, c.Logger, c.DefaultLimits, c.Retention, c.MaxEvents, c.MaxEventBytes
	if opts.ReapInterval == 0 {
		opts.ReapInterval = 250 * time.Millisecond
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Second
	}
	if err := fsync.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := openFile(path, false)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, opts: opts, log: opts.Logger, tenants: map[string]*tenant{}}
	s.metrics = newMetrics(opts.Registerer)
	if err := s.load(); err != nil {
		db.Close()
		var damaged *DamagedError
		if errors.As(err, &damaged) {
			return nil, err
		}
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if opts.AuthMode != "" {
		if err := store.CheckAuthMode(context.Background(), s, opts.AuthMode); err != nil {
			db.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) now() time.Time { return s.opts.Clock() }

// load creates the top-level buckets and the secrets on first use, then
// builds the in-memory state of every tenant.
//
// A file that passed verify may still be damaged in a way only a write
// finds (a page both in use and free): bbolt panics then, before it
// writes anything, and load returns a DamagedError.
func (s *Store) load() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &DamagedError{Path: s.db.Path(), Reason: fmt.Sprint(r)}
		}
	}()
	var secret []byte
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bMeta, bTenants, bTokens, bDevTenants, bRevoked} {
			_, err := tx.CreateBucketIfNotExists(name)
			if errors.Is(err, berrors.ErrIncompatibleValue) {
				return &DamagedError{Path: s.db.Path(), Reason: fmt.Sprintf("%s is not a bucket", name)}
			}
			if err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if secret = meta.Get(kSecret); secret == nil {
			secret = make([]byte, 32)
			rand.Read(secret)
			if err := meta.Put(kSecret, secret); err != nil {
				return err
			}
		}
		secret = append([]byte(nil), secret...)
		tail := meta.Get(kEventTail)
		if tail != nil && len(tail) != 8 {
			return &DamagedError{Path: s.db.Path(), Reason: fmt.Sprintf("the event id tail is %d bytes, not 8", len(tail))}
		}
		if tail == nil {
			tail = binary.BigEndian.AppendUint64(nil, randUint64())
			if err := meta.Put(kEventTail, tail); err != nil {
				return err
			}
		}
		s.tail = binary.BigEndian.Uint64(tail)
		return nil
	})
	if err != nil {
		return err
	}
	s.minter = store.NewMinter(secret)
	return loadTenants(s.db, s.now(), func(t *tenant) { s.tenants[t.id] = t })
}

// loadTenants builds the in-memory state of every tenant of db, as at
// start (start: the time the services' deadlines count from), and hands
// each to keep. A tenant whose records do not decode is a DamagedError:
// the server would not start on the file.
func loadTenants(db *bolt.DB, start time.Time, keep func(*tenant)) error {
	return db.View(func(tx *bolt.Tx) error {
		tenants := tx.Bucket(bTenants)
		if tenants == nil {
			return nil // a file load has not made a database yet
		}
		return tenants.ForEachBucket(func(name []byte) error {
			t, err := loadTenant(tenants.Bucket(name), string(name), start)
			if err != nil {
				return &DamagedError{Path: db.Path(), Reason: fmt.Sprintf("tenant %s: %v", name, err)}
			}
			keep(t)
			return nil
		})
	})
}

func randUint64() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.View(func(tx *bolt.Tx) error { return nil })
}

// Close writes the last heartbeat checkpoint and closes the file.
func (s *Store) Close() error {
	cerr := s.checkpoint()
	if err := s.db.Close(); err != nil {
		return err
	}
	return cerr
}

// Run runs the reaper, the heartbeat checkpoint and event retention until
// ctx is done.
func (s *Store) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	loop := func(name string, every time.Duration, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			store.RunEvery(ctx, every, func() {
				if err := fn(); err != nil {
					s.log.Error("store background work failed", "job", name, "err", err)
				}
			})
		}()
	}
	if s.opts.ReapInterval > 0 {
		loop("reaper", s.opts.ReapInterval, s.reap)
	}
	loop("checkpoint", s.opts.CheckpointInterval, s.checkpoint)
	retentionEvery := min(time.Hour, max(s.opts.Retention/16, time.Second))
	loop("retention", retentionEvery, s.prune)
	if s.opts.BackupSocket != "" {
		wg.Go(func() { s.serveBackups(ctx, s.opts.BackupSocket) })
	}
	wg.Wait()
	return nil
}

// tenant is the in-memory state of one account.
type tenant struct {
	id string

	// wmu serialises the tenant's writes, so that the in-memory state
	// changes in commit order. Held across a commit; never taken while mu is
	// held.
	wmu store.WriteLock // timeouts take it ahead of the writes waiting
	// counts of live objects, and the events retained, guarded by wmu.
	nServices, nConfig int
	events             tally

	mu        sync.Mutex
	acct      store.AccountRecord
	services  map[string]*hbEntry // heartbeat state by service id
	deadlines deadlineHeap
	reaping   int           // services whose timeout is being committed
	changed   chan struct{} // closed and replaced when events are committed
}

func newTenant(id string, acct store.AccountRecord) *tenant {
	return &tenant{id: id, acct: acct, services: map[string]*hbEntry{}, changed: make(chan struct{})}
}

func (t *tenant) account() store.AccountRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acct
}

// loadTenant builds a tenant's in-memory state. Every live service gets its
// full timeout from start (design item 10).
func loadTenant(b *bolt.Bucket, id string, start time.Time) (*tenant, error) {
	var acct store.AccountRecord
	if err := json.Unmarshal(b.Get(kAccount), &acct); err != nil {
		return nil, fmt.Errorf("account record: %w", err)
	}
	for _, name := range [][]byte{bServices, bHeartbeats, bConfig, bEvents} {
		if b.Bucket(name) == nil {
			return nil, fmt.Errorf("no %s bucket", name)
		}
	}
	t := newTenant(id, acct)
	hbs := b.Bucket(bHeartbeats)
	err := b.Bucket(bServices).ForEach(func(k, v []byte) error {
		var r store.ServiceRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("service %q: %w", k, err)
		}
		e := &hbEntry{id: r.ID, incarnation: r.Incarnation, timeout: r.HeartbeatTimeout}
		if raw := hbs.Get(k); raw != nil {
			var h hbRecord
			if err := json.Unmarshal(raw, &h); err != nil {
				return fmt.Errorf("heartbeat state of %q: %w", k, err)
			}
			if h.Incarnation == r.Incarnation {
				e.seq = h.Seq
				if h.LastSeen != 0 {
					e.lastSeen = time.UnixMilli(h.LastSeen)
				}
			}
		}
		e.deadline = start.Add(time.Duration(r.HeartbeatTimeout) * time.Second)
		t.addEntry(e)
		t.nServices++
		return nil
	})
	if err != nil {
		return nil, err
	}
	t.nConfig = b.Bucket(bConfig).Stats().KeyN
	err = b.Bucket(bEvents).ForEach(func(k, v []byte) error {
		t.events.add(v)
		return nil
	})
	return t, err
}

// tenantFor returns the tenant's state, creating its account on first use.
func (s *Store) tenantFor(id string) (*tenant, error) {
	s.mu.RLock()
	t := s.tenants[id]
	s.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[id]; t != nil {
		return t, nil
	}
	acct := store.AccountRecord{CreatedAt: s.now().UnixMilli(), Limits: s.opts.DefaultLimits}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bTenants).CreateBucket([]byte(id))
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bServices, bHeartbeats, bConfig, bEvents} {
			if _, err := b.CreateBucket(name); err != nil {
				return err
			}
		}
		raw, err := json.Marshal(acct)
		if err != nil {
			return err
		}
		return b.Put(kAccount, raw)
	})
	if err != nil {
		return nil, fmt.Errorf("create account %s: %w", id, err)
	}
	t = newTenant(id, acct)
	s.tenants[id] = t
	return t, nil
}

// existingTenant returns the tenant's state if its account exists.
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

// Account implements store.Store.
func (s *Store) Account(ctx context.Context, tenant string) (store.Account, error) {
	t, err := s.tenantFor(tenant)
	if err != nil {
		return store.Account{}, err
	}
	return t.account().Account(tenant), nil
}

// Head implements store.Store.
func (s *Store) Head(ctx context.Context, tenant string) (timeuuid.UUID, error) {
	t, err := s.tenantFor(tenant)
	if err != nil {
		return timeuuid.UUID{}, err
	}
	return t.account().Head, nil
}

// Changed implements store.Store.
func (s *Store) Changed(ctx context.Context, tenant string) (<-chan struct{}, error) {
	t, err := s.tenantFor(tenant)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed, nil
}

// writer is one write transaction on one tenant.
type writer struct {
	s    *Store
	tx   *bolt.Tx
	b    *bolt.Bucket // the tenant's bucket
	now  time.Time
	acct store.AccountRecord
	// acctDirty asks for the account to be written even without events.
	acctDirty bool
	events    []store.Event
	// added and pruned tally the events appended and deleted.
	added, pruned tally
}

func (w *writer) bucket(name []byte) *bolt.Bucket { return w.b.Bucket(name) }

// appendEvent adds an event with the next id in commit order.
func (w *writer) appendEvent(build func(id timeuuid.UUID) store.Event) error {
	id := w.acct.NextEventID(w.now, w.s.tail)
	ev := build(id)
	k := id.Key()
	v := store.EncodeStoredEvent(ev)
	if err := w.bucket(bEvents).Put(k[:], v); err != nil {
		return err
	}
	w.added.add(v)
	w.acct.Head = id
	w.events = append(w.events, ev)
	return nil
}

// write runs fn in a write transaction on t; the caller holds t.wmu. After a
// successful commit the tenant's account is updated and waiters are woken.
func (s *Store) write(t *tenant, fn func(w *writer) error) error {
	w := &writer{s: s, now: s.now(), acct: t.account()}
	start := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		w.tx = tx
		w.b = tx.Bucket(bTenants).Bucket([]byte(t.id))
		if w.b == nil {
			return fmt.Errorf("tenant %s has no bucket", t.id)
		}
		if err := fn(w); err != nil {
			return err
		}
		if len(w.events) == 0 && !w.acctDirty {
			return nil
		}
		if err := w.capEvents(t.events); err != nil {
			return err
		}
		raw, err := json.Marshal(w.acct)
		if err != nil {
			return err
		}
		return w.b.Put(kAccount, raw)
	})
	if err != nil {
		return err
	}
	s.metrics.Committed(time.Since(start).Seconds(), w.events)
	t.events.n += w.added.n - w.pruned.n
	t.events.bytes += w.added.bytes - w.pruned.bytes
	if len(w.events) > 0 || w.acctDirty {
		t.mu.Lock()
		t.acct = w.acct
		if len(w.events) > 0 {
			close(t.changed)
			t.changed = make(chan struct{})
		}
		t.mu.Unlock()
	}
	return nil
}
