package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// After a crash, the store knows only the sequence number checkpointed,
// so it takes any token handed out since. One of those sent again late (a
// duplicate, a proxy's retry) is taken first; the client's newest token
// is still taken after it, and goes on, and the late one's successor is
// then refused: a late duplicate cannot make the store refuse the client,
// which would tell it its service is gone.
func TestCrashLetsTheNewestTokenGoOnAfterALateOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{CheckpointInterval: time.Hour})
	beat := func(s *Store, tok string) (string, error) { return s.Heartbeat(ctx, "1", "svc", tok) }
	must := func(s *Store, tok string) string {
		t.Helper()
		next, err := beat(s, tok)
		if err != nil {
			t.Fatalf("heartbeat with %s: %v", tok, err)
		}
		return next
	}
	refused := func(s *Store, tok, what string) {
		t.Helper()
		var nf *store.NotFoundError
		if _, err := beat(s, tok); !errors.As(err, &nf) || nf.Kind != store.KindHeartbeatMarker {
			t.Errorf("heartbeat with %s: %v, want 404 HeartbeatMarker", what, err)
		}
	}
	tok := must(s, createService(t, s, "svc", 30))
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	t2 := must(s, tok)
	t3 := must(s, t2)
	newest := must(s, t3) // not checkpointed: the crash comes now

	// The file as a crash leaves it: what was committed.
	crashed := filepath.Join(t.TempDir(), "svcreg.db")
	if err := s.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(crashed, 0o600) }); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, filepath.Dir(crashed), Options{CheckpointInterval: time.Hour})
	late := must(s2, t2) // taken: the store cannot tell it was used
	next := must(s2, newest)
	refused(s2, late, "the late duplicate's successor")
	refused(s2, t3, "a token before the newest")
	next = must(s2, next)
	refused(s2, newest, "the newest, used, two heartbeats ago")
	must(s2, next)
}

// Without a restart, tokens are exact: a token minted for the service
// with a number past the current one's (which only a wrap of the numbers,
// millions of heartbeats on, could bring back) is refused.
func TestTokensAheadAreRefusedWithoutARestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{CheckpointInterval: time.Hour})
	tok, err := s.Heartbeat(ctx, "1", "svc", createService(t, s, "svc", 30))
	if err != nil {
		t.Fatal(err)
	}
	tn := s.existingTenant("1")
	tn.mu.Lock()
	e := tn.services["svc"]
	ahead := s.minter.Mint(s.tokenKey(tn, e), store.NextSeq(store.NextSeq(e.seq)), time.Now().Add(time.Minute)).String()
	tn.mu.Unlock()
	var nf *store.NotFoundError
	if _, err := s.Heartbeat(ctx, "1", "svc", ahead); !errors.As(err, &nf) || nf.Kind != store.KindHeartbeatMarker {
		t.Errorf("a token ahead of the current one, without a restart: %v, want 404 HeartbeatMarker", err)
	}
	if _, err := s.Heartbeat(ctx, "1", "svc", tok); err != nil {
		t.Errorf("the current token: %v", err)
	}
}

// A timeout that cannot be committed (here a service record that does
// not decode; in production a full disk) does not fail the tenant's
// reads: they are answered from what is stored, and the due service is
// still there, taking a late heartbeat, until its timeout commits.
func TestReadsOutliveATimeoutThatCannotCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	s := openStore(t, t.TempDir(), Options{ReapInterval: -1, CheckpointInterval: time.Hour,
		Clock: func() time.Time { return time.Unix(0, now.Load()) }})
	due := createService(t, s, "due", 3)
	createService(t, s, "good", 60)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bTenants).Bucket([]byte("1")).Bucket(bServices).Put([]byte("due"), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(5 * time.Second))
	if _, err := s.Service(ctx, "1", "good"); err != nil {
		t.Errorf("read of another service: %v", err)
	}
	if _, err := s.Events(ctx, "1", store.EventQuery{Limit: 10}); err != nil {
		t.Errorf("read of the feed: %v", err)
	}
	if _, err := s.Heartbeat(ctx, "1", "due", due); err != nil {
		t.Errorf("a late heartbeat of the service whose timeout did not commit: %v", err)
	}
}

// openStore opens a store in dir, closed when the test ends.
func openStore(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// createService creates service id of tenant "1" and returns its token.
func createService(t *testing.T, s *Store, id string, timeout int) string {
	t.Helper()
	tok, err := s.CreateService(context.Background(), "1", store.NewService{ID: id, HeartbeatTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// An account's mass timeout of services with big records is committed in
// parts, so that it does not hold every other account's writes back (the
// file has one writer) for as long as it takes; every service times out,
// with its event, and none of another account's.
func TestMassTimeoutCommitsInParts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	reg := prometheus.NewRegistry()
	s := openStore(t, t.TempDir(), Options{ReapInterval: -1, CheckpointInterval: time.Hour, Registerer: reg,
		Clock: func() time.Time { return time.Unix(0, now.Load()) }})
	md := map[string]string{}
	for k := range 20 {
		md[fmt.Sprint("key-", k)] = strings.Repeat("v", 600)
	}
	const big = 40 // some 12 kB each: two or three parts
	for i := range big {
		if _, err := s.CreateService(ctx, "1", store.NewService{ID: fmt.Sprintf("big-%02d", i), HeartbeatTimeout: 3, Metadata: md}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateService(ctx, "2", store.NewService{ID: "other", HeartbeatTimeout: 60}); err != nil {
		t.Fatal(err)
	}
	commits := func() uint64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "svcreg_store_commit_seconds" {
				return mf.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		t.Fatal("no svcreg_store_commit_seconds")
		return 0
	}
	before := commits()
	now.Add(int64(5 * time.Second))
	if err := s.reap(); err != nil {
		t.Fatal(err)
	}
	if n := commits() - before; n < 2 || n > big/4 {
		t.Errorf("%d big services timed out in %d commits, want a few", big, n)
	}
	list, err := s.Services(ctx, "1", store.ServiceQuery{Limit: 100})
	if err != nil || len(list.Values) != 0 {
		t.Errorf("services left: %d (%v), want none", len(list.Values), err)
	}
	page, err := s.Events(ctx, "1", store.EventQuery{Limit: 1000, Types: []registry.EventType{registry.ServiceTimeout}})
	if err != nil || len(page.Values) != big {
		t.Errorf("%d timeout events (%v), want %d", len(page.Values), err, big)
	}
	if _, err := s.Service(ctx, "2", "other"); err != nil {
		t.Errorf("another account's service: %v", err)
	}
}
