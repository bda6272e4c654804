package boltstore

import (
	"container/heap"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// rectified returns the tenant's state after timing out its services past
// their deadline: the reads spec §8.3 lists see their results.
func (s *Store) rectified(tenantID string) (*tenant, error) {
	t, err := s.tenantFor(tenantID)
	if err != nil {
		return nil, err
	}
	return t, s.rectify(t, false)
}

// readRectified is rectified for a read: when the timeouts cannot be
// committed (a full disk), the read is answered all the same, from what
// is stored, with the due services in it as they are (a late heartbeat
// is still taken until they are timed out, spec §8.3), rather than
// failing every read of the tenant: a renderer keeps its view of the
// registry. The reaper commits the timeouts once it can, with the
// deadlines as the events' times, and logs why it cannot meanwhile.
func (s *Store) readRectified(tenantID string) (*tenant, error) {
	t, err := s.tenantFor(tenantID)
	if err != nil {
		return nil, err
	}
	if err := s.rectify(t, false); err != nil {
		s.log.Debug("the timeouts due could not be committed; answering the read from what is stored", "tenant", tenantID, "err", err)
	}
	return t, nil
}

// rectify times out every service of t whose deadline has passed. Each
// timeout is committed once: the due services are taken off the deadline
// heap under wmu. A concurrent caller that finds nothing due while a
// timeout is being committed waits on wmu for the commit, so that no caller
// returns before the services due when it was called are gone
// (read-your-rectification, spec §8.3). The reaper (ahead) takes the
// write lock ahead of the tenant's writes waiting for it, so that one
// tenant's queued writes do not hold up every tenant's timeouts; a
// request takes its turn.
func (s *Store) rectify(t *tenant, ahead bool) error {
	t.mu.Lock()
	due := t.reaping > 0 || len(t.deadlines) > 0 && !t.deadlines[0].deadline.After(s.now())
	t.mu.Unlock()
	if !due {
		return nil
	}
	t.wmu.LockFor(ahead)
	defer t.wmu.Unlock()
	now := s.now()
	var expired []*hbEntry
	t.mu.Lock()
	for len(t.deadlines) > 0 && !t.deadlines[0].deadline.After(now) {
		e := heap.Pop(&t.deadlines).(*hbEntry)
		e.reaping = true // heartbeats now get 404
		expired = append(expired, e)
	}
	t.reaping += len(expired)
	t.mu.Unlock()
	if len(expired) == 0 {
		return nil
	}
	// The timeouts are committed a few hundred kilobytes of records at a
	// time: the file has one writer, and one account's mass timeout of
	// big records (decoded, and written again as events) in one
	// transaction held every other account's writes back for as long.
	// Readers of t wait for all of them (t.wmu).
	removed, done := 0, 0
	var err error
	for done < len(expired) && err == nil {
		var n, taken int
		err = s.write(t, func(w *writer) error {
			n, taken = 0, 0
			svcs, hbs := w.bucket(bServices), w.bucket(bHeartbeats)
			for size := 0; done+taken < len(expired) && size < maxTimeoutBytes; taken++ {
				e := expired[done+taken]
				var rec store.ServiceRecord
				got, err := getJSON(svcs, e.id, &rec)
				if err != nil {
					return err
				}
				size += got
				if got == 0 || rec.Incarnation != e.incarnation {
					continue
				}
				if err := svcs.Delete([]byte(e.id)); err != nil {
					return err
				}
				if err := hbs.Delete([]byte(e.id)); err != nil {
					return err
				}
				// The event's timestamp is the deadline (spec §8.3); its id is
				// the next in commit order (design item 5).
				deadline := e.deadline
				if err := w.appendEvent(func(id timeuuid.UUID) store.Event {
					return store.ServiceEvent(id, deadline, registry.ServiceTimeout, rec)
				}); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err == nil {
			removed += n
			done += taken
		}
	}
	t.mu.Lock()
	t.reaping -= len(expired)
	for i, e := range expired {
		if i >= done {
			e.reaping = false
			heap.Push(&t.deadlines, e)
			continue
		}
		if t.services[e.id] == e {
			delete(t.services, e.id)
		}
	}
	t.mu.Unlock()
	t.nServices -= removed
	s.metrics.Timeouts.Add(float64(removed))
	return err
}

// maxTimeoutBytes bounds the service records one commit of timeouts
// reads: at the most a record can hold (some 15 kB), 17 of them, and
// thousands of common ones.
const maxTimeoutBytes = 256 << 10

// reap rectifies every tenant with a service past its deadline (design
// item 7: timeouts within a second of the deadline without any read).
func (s *Store) reap() error {
	var firstErr error
	for _, t := range s.allTenants() {
		if err := s.rectify(t, true); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
