package boltstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/server/store"
)

// The bytes of an account's events are capped as their number is: the
// oldest go, the account's pruned mark follows, and the tally survives a
// restart.
func TestEventBytesCap(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 8000
	opts := Options{MaxEvents: -1, MaxEventBytes: maxBytes}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	value := strings.Repeat("x", 500)
	for i := range 40 {
		if err := s.SetConfig(ctx, "1", fmt.Sprintf("key-%d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store, when string) {
		t.Helper()
		page, err := s.Events(ctx, "1", store.EventQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var size int
		for _, ev := range page.Values {
			size += len(store.EncodeStoredEvent(ev))
		}
		if size > maxBytes || size < maxBytes-1000 || len(page.Values) == 0 {
			t.Errorf("%s: %d events of %d bytes kept, want just under %d bytes", when, len(page.Values), size, maxBytes)
		}
		if got := s.existingTenant("1").events; got.n != len(page.Values) || got.bytes != int64(size) {
			t.Errorf("%s: tally %+v, want %d events of %d bytes", when, got, len(page.Values), size)
		}
		if _, err := s.Events(ctx, "1", store.EventQuery{From: timeuuid.UUID{}, CheckExpired: true, Limit: 10}); !errors.Is(err, store.ErrMarkerExpired) {
			t.Errorf("%s: a marker before the deleted events: %v, want ErrMarkerExpired", when, err)
		}
	}
	check(s, "after 40 writes")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetConfig(ctx, "1", "key-40", value); err != nil {
		t.Fatal(err)
	}
	check(s, "after a restart and a write")
}
