package watcher

import (
	"testing"
	"time"
)

// A zero Latest works as NewLatest's does: Put signals Updates, and a
// signal stands for every Put before it.
func TestLatestZeroValue(t *testing.T) {
	t.Parallel()
	for name, l := range map[string]*Latest{"zero": new(Latest), "NewLatest": NewLatest()} {
		if l.Snapshot() != nil {
			t.Errorf("%s: a snapshot before any Put", name)
		}
		updates := l.Updates()
		select {
		case <-updates:
			t.Errorf("%s: signalled before any Put", name)
		default:
		}
		first, second := NewSnapshot(nil, nil, "m1", time.Now()), NewSnapshot(nil, nil, "m2", time.Now())
		l.Put(first)
		l.Put(second)
		select {
		case <-updates:
		default:
			t.Fatalf("%s: Put did not signal the channel Updates returned before it", name)
		}
		if l.Snapshot() != second {
			t.Errorf("%s: Snapshot is not the last Put", name)
		}
		select {
		case <-l.Updates():
			t.Errorf("%s: two signals for two Puts before a read", name)
		default:
		}
	}
}
