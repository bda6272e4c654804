package etcdstore

import (
	"testing"
	"time"
)

// TestLeaseWatch drives the decision a starting node makes from etcd's
// answers about the leases of the node keys it found, answer by answer.
func TestLeaseWatch(t *testing.T) {
	const lease, ms = 7, time.Millisecond
	type answer struct {
		at     time.Duration // since the watch began; asked 10 ms before
		ttl    int64
		term   uint64
		member uint64
	}
	for _, tc := range []struct {
		name    string
		answers []answer
		// renewedAt is the index of the answer that shows a renewal; -1:
		// none does.
		renewedAt int
		expired   bool
	}{{
		name:      "a dead node's lease runs out",
		answers:   []answer{{0, 2, 5, 1}, {200 * ms, 1, 5, 1}, {1400 * ms, 0, 5, 1}, {2400 * ms, -1, 5, 1}},
		renewedAt: -1, expired: true,
	}, {
		name:      "a live node renews its lease",
		answers:   []answer{{0, 4, 5, 1}, {200 * ms, 3, 5, 1}, {1800 * ms, 4, 5, 1}},
		renewedAt: 2,
	}, {
		name:      "the first answer of a term is not compared",
		answers:   []answer{{0, 2, 5, 1}, {200 * ms, 4, 5, 1}},
		renewedAt: -1,
	}, {
		// A new leader gives every lease its full TTL again, and an
		// election timeout more: the first answers of the new term
		// start the comparison again.
		name:      "a new leader's refresh is no renewal",
		answers:   []answer{{0, 2, 5, 1}, {200 * ms, 1, 5, 1}, {400 * ms, 6, 6, 1}, {600 * ms, 5, 6, 1}, {1600 * ms, 4, 6, 1}},
		renewedAt: -1,
	}, {
		// A follower that has learnt of term 6 answers with the old
		// leader's TTL once, then the new leader's refreshed one: taking
		// the first for the first look of term 6 reads the refresh as a
		// renewal.
		name:      "an answer of the new term with the old leader's TTL",
		answers:   []answer{{0, 3, 5, 1}, {200 * ms, 2, 5, 1}, {400 * ms, 2, 6, 1}, {600 * ms, 6, 6, 1}, {800 * ms, 5, 6, 1}, {1800 * ms, 4, 6, 1}},
		renewedAt: -1,
	}, {
		name:      "a TTL of 0 tells nothing",
		answers:   []answer{{0, 1, 5, 1}, {200 * ms, 1, 5, 1}, {1400 * ms, 0, 5, 1}, {1600 * ms, 0, 5, 1}},
		renewedAt: -1,
	}, {
		name:      "renewed after a new leader",
		answers:   []answer{{0, 2, 5, 1}, {200 * ms, 6, 6, 1}, {400 * ms, 5, 6, 1}, {2000 * ms, 5, 6, 1}},
		renewedAt: 3,
	}, {
		// The client spreads its requests over the members: each
		// follower may give one answer of the new term with the old
		// leader's TTL, and only answers of one member are compared.
		name: "answers of the new term with the old leader's TTL from two members",
		answers: []answer{{0, 3, 5, 1}, {200 * ms, 2, 5, 2}, {400 * ms, 6, 6, 1}, {600 * ms, 2, 6, 2},
			{800 * ms, 6, 6, 1}, {1000 * ms, 6, 6, 2}, {1200 * ms, 5, 6, 1}, {1400 * ms, 5, 6, 2}},
		renewedAt: -1,
	}, {
		name:      "a renewal seen by one of two members",
		answers:   []answer{{0, 4, 5, 1}, {200 * ms, 4, 5, 2}, {400 * ms, 3, 5, 1}, {600 * ms, 3, 5, 2}, {2200 * ms, 4, 5, 1}},
		renewedAt: 4,
	}, {
		// An old leader that lost its leadership, asked by a follower
		// that does not know yet, reports every lease as never expiring.
		name:      "a TTL no lease has",
		answers:   []answer{{0, 3, 5, 1}, {200 * ms, 2, 5, 1}, {400 * ms, 9223372036, 5, 1}, {1400 * ms, 1, 5, 1}},
		renewedAt: -1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			w := newLeaseWatch(start, 2*time.Second, time.Second)
			w.add(lease)
			for i, a := range tc.answers {
				at := start.Add(a.at)
				renewed := w.see(lease, a.ttl, a.term, a.member, at.Add(-10*ms), at)
				if want := i == tc.renewedAt; renewed != want {
					t.Fatalf("answer %d %+v: renewed %v, want %v", i, a, renewed, want)
				}
			}
			if _, watched := w.leases[lease]; watched == tc.expired {
				t.Errorf("still watched %v, want %v", watched, !tc.expired)
			}
		})
	}
}

// TestLeaseWatchDeadline checks how long a starting node waits for leases
// to expire: at first twice its own TTL and a second; as long as etcd says
// a lease has left, its second of TTL 0, a second more and a request's
// time.
func TestLeaseWatchDeadline(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := newLeaseWatch(start, 2*time.Second, time.Second)
	w.add(1)
	w.add(2)
	if want := start.Add(5 * time.Second); !w.deadline.Equal(want) {
		t.Fatalf("deadline %v, want %v", w.deadline, want)
	}
	w.see(1, 1, 5, 1, start, start) // within the first deadline
	if want := start.Add(5 * time.Second); !w.deadline.Equal(want) {
		t.Errorf("after a short lease: deadline %v, want %v", w.deadline, want)
	}
	at := start.Add(time.Second)
	w.see(2, 10, 5, 1, at, at) // a longer lease than this node's
	if want := at.Add(14 * time.Second); !w.deadline.Equal(want) {
		t.Errorf("after a lease of 10 s: deadline %v, want %v", w.deadline, want)
	}
	w.see(2, 3, 5, 1, at, at.Add(time.Second)) // never shortened
	if want := at.Add(14 * time.Second); !w.deadline.Equal(want) {
		t.Errorf("after a shorter answer: deadline %v, want %v", w.deadline, want)
	}
	w.see(2, 9223372036, 5, 2, at, at) // no lease has that long
	if want := at.Add(14 * time.Second); !w.deadline.Equal(want) {
		t.Errorf("after a TTL no lease has: deadline %v, want %v", w.deadline, want)
	}
}
