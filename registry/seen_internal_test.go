package registry

import (
	"strconv"
	"testing"
)

// A feed remembers the last maxSeen ids that are not time UUIDs: one seen
// again among them is not new; the oldest, once maxSeen others came after
// it, is.
func TestFeedSeesTheLastIDs(t *testing.T) {
	var w Feed
	for i := range maxSeen + 1 {
		if !w.see("id-" + strconv.Itoa(i)) {
			t.Fatalf("id-%d, seen once, is not new", i)
		}
	}
	if w.see("id-1") || w.see("id-"+strconv.Itoa(maxSeen)) {
		t.Error("an id among the last seen is new again")
	}
	if !w.see("id-0") {
		t.Error("the oldest id, past the last maxSeen, is not new")
	}
	if len(w.seen) != maxSeen || len(w.seenRing) != maxSeen {
		t.Errorf("%d ids kept (%d in the ring), want %d", len(w.seen), len(w.seenRing), maxSeen)
	}
}
