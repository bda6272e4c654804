package etcdstore

import (
	"sync"
	"time"
)

// An etcd outage (no quorum, or this node cut off from every member) is,
// to the clients of this node, a registry that is down: a heartbeat that
// needs etcd answers 503, and once this node no longer counts on its lease
// (three quarters of the TTL after the last renewal it asked for), so does
// every other. Deadlines pass meanwhile while the clients retry. When etcd
// is back, every reaper would time those services out before their
// clients' retries got through, and the load balancers built from the
// registry would drop live backends.
//
// So, as after a restart of every node (design item 10), a service whose
// deadline passed during an outage of this node's is not timed out by this
// node until its full timeout has passed again since the outage ended; a
// live client heartbeats in that time. A node that could reach etcd
// throughout times such a service out as before: when only one node was
// cut off, the clients it failed went to the others (a load balancer, or
// several URLs), and a service that none of them heard from is dead.
// Timeouts stay conditional transactions, so every timeout is still
// committed once; after an outage of the whole registry, a service whose
// client died during it times out its full timeout after the outage.

// outages are the spans of time in which this node could not reach etcd
// for longer than it counts on its lease, kept until their grace is over.
type outages struct {
	mu sync.Mutex
	// lastOK is when (the store's clock, Unix ns) this node asked for the
	// last lease renewal or registration that succeeded; 0 before the
	// first. lastAsked is the same by the monotonic clock, which measures
	// the gap (the store's clock may be a test's, moved by hand).
	lastOK    int64
	lastAsked time.Time
	spans     []outageSpan
}

// outageSpan is one outage: from the last renewal asked before it to the
// first that succeeded after it (Unix ns).
type outageSpan struct{ start, end int64 }

// maxGrace is the longest grace an outage gives: the longest heartbeat
// timeout (spec §7.4, 3 to 120 s).
const maxGrace = 120 * time.Second

// reached records that a renewal (or registration) asked for at asked
// (monotonic) and askedAt (the store's clock) succeeded at now (the
// store's clock), and returns the outage it ended: more than gap since the
// last one asked for (which a node renewing on time, or after a failed
// attempt or two, does not reach). ok is false if there was none.
func (o *outages) reached(asked, askedAt, now time.Time, gap time.Duration) (span outageSpan, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	kept := o.spans[:0]
	for _, s := range o.spans {
		if now.UnixNano() < s.end+int64(maxGrace) {
			kept = append(kept, s)
		}
	}
	o.spans = kept
	if !o.lastAsked.IsZero() && time.Since(o.lastAsked) > gap {
		span, ok = outageSpan{o.lastOK, now.UnixNano()}, true
		o.spans = append(o.spans, span)
	}
	if asked.After(o.lastAsked) {
		o.lastAsked, o.lastOK = asked, askedAt.UnixNano()
	}
	return span, ok
}

// graced reports whether a service whose deadline (Unix ns) has passed at
// now, and whose heartbeat timeout is timeout, is not to be timed out yet:
// its deadline passed during an outage of this node's whose grace (the
// timeout from the outage's end) runs until after now, or during the one
// going on (cutOff: this node does not count on its lease now).
func (o *outages) graced(deadline int64, timeout time.Duration, now int64, cutOff bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cutOff && o.lastOK != 0 && deadline > o.lastOK {
		return true
	}
	for _, s := range o.spans {
		if deadline > s.start && now < s.end+int64(timeout) {
			return true
		}
	}
	return false
}

// graced reports whether this node leaves a due service, its heartbeat
// timeout given in seconds, to its grace after an outage (see outages).
func (s *Store) graced(deadline int64, timeoutSeconds int, now int64) bool {
	_, alive := s.lease.get()
	return s.outages.graced(deadline, graceOf(timeoutSeconds), now, !alive)
}

// graceOf is the grace of a service whose heartbeat timeout is seconds: the
// timeout, within the range the API takes.
func graceOf(seconds int) time.Duration {
	return min(max(time.Duration(seconds)*time.Second, 3*time.Second), maxGrace)
}

// impliedTimeout is the heartbeat timeout a heartbeat state carries: its
// deadline less when it was last seen (a copy has no service record), in
// seconds; the longest if it was never seen.
func impliedTimeout(hb hbRecord) int {
	if hb.LastSeen == 0 {
		return int(maxGrace / time.Second)
	}
	return int((time.Duration(hb.Deadline-hb.LastSeen*int64(time.Millisecond)) + time.Second/2) / time.Second)
}

// noteRenewal records a renewal or registration asked for at asked
// (monotonic) and askedAt (the store's clock) that succeeded, and logs the
// outage it ended, if any.
func (s *Store) noteRenewal(asked, askedAt time.Time) {
	span, ok := s.outages.reached(asked, askedAt, s.now(), s.opts.NodeTTL*3/4)
	if !ok {
		return
	}
	s.metrics.outages.Inc()
	s.log.Warn("etcd answers again after an outage; services whose deadline passed meanwhile get their full timeout again before this node times them out",
		"outage", time.Duration(span.end-span.start).Round(time.Millisecond),
		"since", time.Unix(0, span.start).UTC())
}
