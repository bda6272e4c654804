package server_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/svcreg/svcreg/server/store"
)

// countingStore counts the heartbeats that reach the store.
type countingStore struct {
	store.Store
	heartbeats atomic.Int32
}

func (c *countingStore) Heartbeat(ctx context.Context, tenant, id, token string) (string, error) {
	c.heartbeats.Add(1)
	return c.Store.Heartbeat(ctx, tenant, id, token)
}

// A heartbeat for an id no service can have (too long, characters the
// rule refuses) is answered as one for an unknown service, 404, without
// reaching the store: heartbeats count against no rate limit, and a store
// may keep what it learned of each id.
func TestHeartbeatOfAnImpossibleID(t *testing.T) { onEachStore(t, testHeartbeatOfAnImpossibleID) }

func testHeartbeatOfAnImpossibleID(t *testing.T, kind string) {
	t.Parallel()
	base, st := startWrapped(t, kind, func(s store.Store) *countingStore { return &countingStore{Store: s} })
	c := devLogin(t, base, "impossible")
	body := map[string]string{"token": "8b2e6c2c-0b6b-11ee-8000-000000000000"}
	c.do("POST", "/services/never-created/heartbeat", body).fault(404, "notFoundError", "object does not exist", unspecified{})
	if n := st.heartbeats.Load(); n != 1 {
		t.Fatalf("%d heartbeats reached the store, want 1", n)
	}
	for _, id := range []string{strings.Repeat("x", 66), "has%20space", "ab", "semi%3Bcolon"} {
		c.do("POST", "/services/"+id+"/heartbeat", body).fault(404, "notFoundError", "object does not exist", unspecified{})
	}
	if n := st.heartbeats.Load(); n != 1 {
		t.Errorf("%d heartbeats reached the store, want only the one of a valid id", n)
	}
}
