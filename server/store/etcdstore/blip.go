package etcdstore

import (
	"context"
	"errors"
	"time"

	"github.com/svcreg/svcreg/server/store"
)

// A blip is a moment in which etcd does not answer although the nodes
// still count on their leases (outage.go): a leader election after the
// leader crashed, a member restarting, every member out for less than
// three quarters of the node TTL. A heartbeat that needs etcd (a
// service's first at a node, one whose deadline passes the stored one)
// waits through it, and its client gives the attempt up and retries
// (registry/heartbeat.go: after 750 ms at first); the service's deadline
// may pass meanwhile. As etcd comes back, a reaper that finds the
// service due would time it out before the retry gets through, and the
// client's next heartbeat gets 404.
//
// So every node's reaper watches its own etcd calls: one that fails, or
// that takes longer than blipAfter to answer, means this node could not
// see etcd from the start of its last pass that could (reapOK; before the
// first, from its registration) until the
// first call that answers again, or until the stalled call answers. That
// span is a blip, recorded as an outage is (outages.blips), and a service
// whose deadline passed since its start is left to its grace — the full
// timeout from the blip's end — by the same rules (graced): a live client
// heartbeats in that time, and a dead one's service times out up to its
// timeout late, never early. While the reaper's calls fail, or the one in
// flight has stalled past blipAfter, the due services whose deadline
// passed since its last good pass are left alone, as while this node does
// not count on its lease.
//
// Every node's reaper calls etcd about every ReapInterval, so a blip of
// etcd itself, longer than that, is seen by every node: none of them
// times those services out early. A node that alone could not see etcd
// leaves them to the others, who saw no blip and time them out as
// before; its clients' heartbeats went to them.
//
// A node does not show its blips in its key, as it shows its outages: a
// node that starts during or just after one leaves the due services it
// does not hold to the others for its first moments anyway (outages.join),
// and a key written after every blip would be an etcd write for every node
// right as etcd answers again.

// blipAfter is how long an etcd call of the reaper may take before it
// counts as a blip. A linearizable read or a commit takes a few
// milliseconds on a healthy cluster (etcd itself warns at 100 ms); a
// leader election takes etcd's election timeout, 1 s by default. 500 ms
// is well past the one, under the other, and under the 750 ms the Go
// client gives a heartbeat's first attempt: a stall that outlasts it
// makes the client retry. A call slowed down past it by load, not by a
// blip, only makes the services due meanwhile time out up to their
// timeout late.
const blipAfter = 500 * time.Millisecond

// reapPassKey marks the context of a reaper pass: its etcd calls
// (txnSends) are watched for blips.
type reapPassKey struct{}

// reapBase is when the blip going on, or the next, began at the earliest:
// the start of the last reaper pass that ended seeing etcd, or, before the
// first, when this node asked for its first registration; 0 before that.
// Called with o.mu held.
func (o *outages) reapBase() int64 {
	if o.reapOK != 0 {
		return o.reapOK
	}
	return o.joined
}

// reaperBlind reports whether the reaper cannot see etcd now: its last
// call failed and none succeeded since, or the one in flight has stalled.
// Called with o.mu held.
func (o *outages) reaperBlind() bool {
	return o.reapBase() != 0 && (o.reapFailing || !o.reapInFlight.IsZero() && time.Since(o.reapInFlight) > blipAfter)
}

// reapCallSent records that the reaper sent an etcd call at sent
// (monotonic).
func (o *outages) reapCallSent(sent time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reapInFlight = sent
}

// reapCallDone records that the reaper's call sent at sent answered at
// done (monotonic), now by the store's clock, and whether it failed for
// want of etcd. It returns the blip it ended, if any: the call is the
// first to answer since calls failed, or it took longer than blipAfter.
func (o *outages) reapCallDone(sent, done time.Time, now int64, failed bool) (span outageSpan, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reapInFlight = time.Time{}
	if failed {
		o.reapFailing = true
		return outageSpan{}, false
	}
	if !o.reapFailing && done.Sub(sent) <= blipAfter {
		return outageSpan{}, false
	}
	o.reapFailing = false
	base := o.reapBase()
	if base == 0 || now <= base {
		return outageSpan{}, false
	}
	span = outageSpan{base, now}
	o.blips = append(inGrace(o.blips, now), span)
	return span, true
}

// reapPassEnded records that a reaper pass that began at start (the
// store's clock) ended: if its last etcd call answered, the next blip
// begins at its start at the earliest.
func (o *outages) reapPassEnded(start int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.reapFailing {
		o.reapOK = max(o.reapOK, start)
	}
}

// reapCall is called by txnSends as it sends an etcd call on ctx; if ctx
// is a reaper pass's, it returns what to call with the call's error once
// it answered, else nil.
func (s *Store) reapCall(ctx context.Context) func(err error) {
	if ctx.Value(reapPassKey{}) == nil {
		return nil
	}
	sent := time.Now()
	s.outages.reapCallSent(sent)
	return func(err error) {
		failed := err != nil && (errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil)
		span, ok := s.outages.reapCallDone(sent, time.Now(), s.now().UnixNano(), failed)
		if !ok {
			return
		}
		s.metrics.blips.Inc()
		s.log.Info("etcd answers this node's reaper again after a blip; services whose deadline passed meanwhile get their full timeout again before this node times them out",
			"blip", time.Duration(span.end-span.start).Round(time.Millisecond),
			"since", time.Unix(0, span.start).UTC())
	}
}
