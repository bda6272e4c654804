// Package etcdserver gives internal/testserver its etcd store: a test
// binary that imports it can start servers with Store: testserver.Etcd
// (and its suites that check every store run on etcd too). Each such
// server keeps its data under a key prefix of its own, in an etcd of
// internal/etcdtest: one member per server, or one shared by all of a test
// binary's servers when its TestMain calls Main.
package etcdserver

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

func init() { testserver.RegisterEtcd(newBackend) }

// Main runs a test binary's tests with one etcd member shared by all its
// etcd-store servers, each under its own key prefix, instead of a member
// started and stopped for each; the member starts with the first such
// server and is stopped, its data removed, once the tests are done. Call it
// from TestMain: os.Exit(etcdserver.Main(m)).
func Main(m *testing.M) int {
	sharedEtcd.mu.Lock()
	sharedEtcd.enabled = true
	sharedEtcd.mu.Unlock()
	code := m.Run()
	sharedEtcd.mu.Lock()
	defer sharedEtcd.mu.Unlock()
	if sharedEtcd.stop != nil {
		sharedEtcd.stop()
	}
	return code
}

// sharedEtcd is the member Main shares.
var sharedEtcd shared

type shared struct {
	mu      sync.Mutex
	enabled bool
	cluster *etcdtest.Cluster
	stop    func()
	err     error
}

// endpoints returns the shared member's endpoints, starting it on first
// use, or nil when the tests do not share one.
func (sh *shared) endpoints() ([]string, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !sh.enabled {
		return nil, nil
	}
	if sh.cluster == nil && sh.err == nil {
		sh.cluster, sh.stop, sh.err = etcdtest.StartShared(etcdtest.Options{})
	}
	if sh.err != nil {
		return nil, sh.err
	}
	return sh.cluster.Endpoints(), nil
}

// backend is an etcd client and a key prefix of the server's own.
type backend struct {
	cli    *clientv3.Client
	prefix string
}

func newBackend(t testing.TB) testserver.Backend {
	t.Helper()
	endpoints, err := sharedEtcd.endpoints()
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	if endpoints == nil {
		endpoints = etcdtest.Start(t, etcdtest.Options{}).Endpoints()
	}
	cli, err := etcdstore.NewClient(etcdstore.ClientConfig{Endpoints: endpoints})
	if err != nil {
		t.Fatalf("testserver: etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	var b [4]byte
	rand.Read(b[:])
	return &backend{cli: cli, prefix: "/svcreg-test-" + hex.EncodeToString(b[:]) + "/"}
}

func (b *backend) Open(opts testserver.Options) (testserver.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return etcdstore.Open(ctx, b.cli, etcdstore.Options{
		Prefix: b.prefix,
		Clock:  opts.Now(),
		// The embedded store caps events as it writes them; the etcd
		// store soon after.
		EventCapInterval: 100 * time.Millisecond,
		// The suite's tests share one etcd member and two cores under the
		// race detector: a node starved of CPU for three quarters of the
		// default lease (under 4 s) would stop counting on its lease, and
		// leave due services to an outage's grace, which only the outage
		// tests (of the store's own package) are about.
		NodeTTL: 15 * time.Second,
		// Nor should a commit that waits past the default 5 s for its
		// turn fail a test's write with 503: only the store's own tests
		// are about the timeout.
		RequestTimeout: 30 * time.Second,
		ReapInterval:   opts.ReapInterval,
		DefaultLimits:  opts.Limits,
		Retention:      opts.Retention,
		MaxEvents:      opts.MaxEvents,
		// The write budget the nodes share, as the server's own (none
		// unless the test sets one).
		WriteRate:  cmp.Or(opts.WriteRate, -1),
		WriteBurst: opts.WriteBurst,
	})
}
