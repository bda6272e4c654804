package etcdstore

import (
	"slices"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
)

// The feed is a range read and the deadline index a range scan: both rely
// on keys sorting as what they encode.
func TestKeysSortAsTheyEncode(t *testing.T) {
	k := keys{p: "/p/"}
	base := time.Unix(1796031115, 0)
	var ids []timeuuid.UUID
	for i := range 50 {
		ids = append(ids, timeuuid.New(timeuuid.Ticks(base)+uint64(i*7919%97), uint64(i)*0x9E3779B97F4A7C15))
	}
	byKey := slices.Clone(ids)
	slices.SortFunc(byKey, func(a, b timeuuid.UUID) int {
		ka, kb := k.event("7777", a), k.event("7777", b)
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
	slices.SortFunc(ids, timeuuid.Compare)
	if !slices.Equal(byKey, ids) {
		t.Error("event keys do not sort in UUID order")
	}
	for _, id := range ids {
		if got, ok := k.parseEventID("7777", k.event("7777", id)); !ok || got != id {
			t.Errorf("event key of %s parses to %s, %v", id, got, ok)
		}
	}

	for _, tenant := range []string{"7777", "a/b", "a%2Fb", "ten ant"} {
		d := base.Add(3 * time.Second).UnixNano()
		key := k.due(d, tenant, "svc-1")
		gd, gt, gid, ok := k.parseDue(key)
		if !ok || gd != d || gt != tenant || gid != "svc-1" {
			t.Errorf("due key %q parses to %d %q %q %v", key, gd, gt, gid, ok)
		}
		deadline := base.Add(3 * time.Second)
		if key >= k.dueThrough(deadline) {
			t.Errorf("due key %q is outside the range through its deadline", key)
		}
		if key < k.dueThrough(deadline.Add(-time.Nanosecond)) {
			t.Errorf("due key %q is inside the range through just before its deadline", key)
		}
	}
	if k.account("a/b") == k.account("a%2Fb") {
		t.Error("two tenants share an account key")
	}
}
