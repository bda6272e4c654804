package server

import (
	"strconv"
	"testing"
	"time"
)

// Past maxLimiterKeys keys, a new key is still limited: it takes the place
// of the key used least recently, and keys still in use stay limited.
func TestLimiterPastItsKeysEvictsTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newKeyedLimiter(1, time.Minute, func() time.Time { return now })
	for i := range maxLimiterKeys {
		now = now.Add(time.Microsecond)
		if ok, _ := l.reserve("k" + strconv.Itoa(i)); !ok {
			t.Fatalf("key %d refused at its first attempt", i)
		}
	}
	now = now.Add(time.Microsecond)
	if ok, _ := l.reserve("late"); !ok {
		t.Fatal("a new key past the cap refused at its first attempt")
	}
	if ok, retry := l.reserve("late"); ok || retry <= 0 {
		t.Errorf("a new key past the cap got a second attempt of its budget of 1 (retry %v): not limited", retry)
	}
	if _, ok := l.buckets["k0"]; ok {
		t.Error("the least recently used key was kept")
	}
	if ok, _ := l.reserve("k1"); ok {
		t.Error("a key in use was forgotten for the new one")
	}
}
