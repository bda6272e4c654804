package etcdstore

import (
	"testing"
	"time"
)

// The cache keeps an unused entry with a lost commit until the commit's
// stored deadline, past which any node times the service out: with the
// reaper off nothing reads it back, and it must not stay for good.
func TestSweepKeepsLostCommitsUntilTheirStoredDeadline(t *testing.T) {
	var h hbState
	h.init()
	now := time.Now()
	e := h.lock("tenant", "svc", now.Add(-time.Hour))
	e.setLost(&lostCommit{stored: hbRecord{Deadline: now.Add(time.Minute).UnixNano()}, mem: hbRecord{Deadline: now.UnixNano()}})
	e.mu.Unlock()

	h.sweep(now)
	if len(h.entries) != 1 || len(h.lost) != 1 {
		t.Fatalf("before the stored deadline: %d entries, %d lost; want the entry kept", len(h.entries), len(h.lost))
	}
	h.sweep(now.Add(2 * time.Minute))
	if len(h.entries) != 0 || len(h.lost) != 0 || !e.dead {
		t.Errorf("past the stored deadline: %d entries, %d lost, dead %t; want it dropped", len(h.entries), len(h.lost), e.dead)
	}
}
