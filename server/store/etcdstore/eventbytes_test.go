package etcdstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// An account made before the store counted its events' bytes (its record
// without the count) is capped too: its events from before the count go
// first. Taking their bytes off a count that never held them had left it
// below the real size for good, and the cap never fired.
func TestMaxEventBytesOfAnAccountMadeBefore(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	prefix := registryPrefix(t)
	ctx := context.Background()
	cli := testClient(t, c.Endpoints())
	open := func(opts etcdstore.Options) *etcdstore.Store {
		opts.Prefix, opts.ReapInterval, opts.MaxEvents = prefix, -1, -1
		s, err := etcdstore.Open(ctx, cli, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const tenant = "7"
	value := func(i int) string { return strings.Repeat(string(rune('a'+i%26)), 1200) }
	before := open(etcdstore.Options{MaxEventBytes: -1})
	for i := range 20 {
		if err := before.SetConfig(ctx, tenant, "k", value(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The record as a store that did not count left it.
	key := etcdstore.AccountKey(before, tenant)
	if err := before.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the account: %v", err)
	}
	var acct map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &acct); err != nil {
		t.Fatal(err)
	}
	delete(acct, "event_bytes")
	delete(acct, "event_bytes_counted")
	delete(acct, "event_bytes_from")
	raw, _ := json.Marshal(acct)
	if _, err := cli.Put(ctx, key, string(raw)); err != nil {
		t.Fatal(err)
	}

	const most = 8000
	s := open(etcdstore.Options{MaxEventBytes: most, EventCapInterval: 50 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	for i := range 30 {
		if err := s.SetConfig(ctx, tenant, "k", value(i+20)); err != nil {
			t.Fatal(err)
		}
	}
	size := func() (n, bytes int) {
		page, err := s.Events(ctx, tenant, store.EventQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range page.Values {
			bytes += len(ev.JSON)
		}
		return len(page.Values), bytes
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n, b := size()
		if b <= most {
			if n == 0 {
				t.Fatal("the cap deleted every event")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events of %d bytes kept after a minute; want at most %d bytes", n, b, most)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A tenant whose event cap fails does not leave the tenants after it in
// the pass uncapped.
func TestEventCapGoesOnPastAFailingTenant(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	ctx := context.Background()
	cli := testClient(t, c.Endpoints())
	s := openStore(t, cli, etcdstore.Options{Prefix: registryPrefix(t), ReapInterval: -1, MaxEvents: 3, EventCapInterval: time.Hour})
	const bad = 9
	for i := range bad + 1 {
		for j := range 6 {
			if err := s.SetConfig(ctx, fmt.Sprint(i), fmt.Sprint("k", j), "v"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The accounts of all but the last become unreadable.
	for i := range bad {
		if _, err := cli.Put(ctx, etcdstore.AccountKey(s, fmt.Sprint(i)), "{damaged"); err != nil {
			t.Fatal(err)
		}
	}
	if err := etcdstore.CapEvents(s); err == nil {
		t.Fatal("the event cap of damaged accounts did not fail")
	}
	page, err := s.Events(ctx, fmt.Sprint(bad), store.EventQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Values) != 3 {
		t.Errorf("the sound tenant has %d events after the cap, want 3", len(page.Values))
	}
}
