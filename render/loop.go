package render

import (
	"context"
	"fmt"
	"time"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/watcher"
)

// Source delivers snapshots: Updates is signalled when Snapshot has a newer
// one. *watcher.Watcher is a Source.
type Source interface {
	Snapshot() *watcher.Snapshot
	Updates() <-chan struct{}
}

// Loop is the render loop: it takes snapshots from a Source and template
// sets from reloads, debounces, and runs passes.
//
// Its fields are set before Run, which then owns the Loop (it updates
// Retry as it goes); Renderer and Source are required.
type Loop struct {
	// Renderer runs the passes.
	Renderer *Renderer
	// Source delivers the snapshots, usually a *watcher.Watcher.
	Source Source
	// Sets delivers a new template set after a reload (SIGHUP or a changed
	// template file); the loop renders with it at once.
	Sets <-chan *Set
	// Passed, if set, is told the result of each pass (Exec.Passed).
	Passed func(PassResult)
	// Retry spaces the passes that follow a failed one, with nothing new
	// from the registry: a check or reload that failed (the load balancer
	// restarting, a check timing out) is tried again on the same
	// snapshot. Zero: from 1s, doubling up to 1m, with jitter. The type
	// is internal: from outside the module, set Retry.Min and Retry.Max.
	Retry retry.Backoff
}

// Run renders until ctx is done, then waits for the work its passes left
// running (drains, checks of files applied ahead) to stop, and returns
// nil. The first synced snapshot is rendered at
// once; after that, changes are debounced by the set's [wait]: a pass runs
// when no change came for min, and at the latest max after the first
// change. A group held back by min_reload_interval is retried when allowed;
// a pass that failed is run again after a backoff (Retry) until one passes.
func (l *Loop) Run(ctx context.Context, set *Set) error {
	if l.Retry.Min <= 0 || l.Retry.Max <= 0 {
		l.Retry = retry.Backoff{Min: time.Second, Max: time.Minute}
	}
	var (
		snap     *watcher.Snapshot
		rendered *watcher.Snapshot // the snapshot of the last pass
		deadline time.Time         // the latest time the pending change may wait to
		timer    = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	// The drains the passes leave running, and the checks of the files
	// they applied ahead, stop with the loop.
	ctx, cancel := context.WithCancel(ctx)
	defer l.Renderer.runtimes.wg.Wait()
	defer cancel()
	schedule := func(at time.Time) { timer.Reset(time.Until(at)) }
	// retrySoon runs a pass on the same snapshot after the backoff, for a
	// failure found after its pass ended, unless a change's pass comes
	// first.
	retrySoon := func() {
		if deadline.IsZero() {
			schedule(time.Now().Add(l.Retry.Next()))
		}
	}
	pass := func() {
		deadline = time.Time{}
		res := l.Renderer.Pass(ctx, set, snap)
		rendered = snap
		l.Renderer.Health.setRendered(snap)
		if l.Passed != nil {
			l.Passed(res)
		}
		retryAt := res.RetryAt
		if len(res.Failures) == 0 {
			l.Retry.Reset()
		} else if at := time.Now().Add(l.Retry.Next()); retryAt.IsZero() || at.Before(retryAt) {
			retryAt = at
		}
		if !retryAt.IsZero() {
			schedule(retryAt)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.Source.Updates():
			snap = l.Source.Snapshot()
			if snap == nil || !snap.Synced {
				continue
			}
			if rendered == nil {
				pass() // the first render is not delayed
				continue
			}
			if snap.Version == rendered.Version && snap.SyncedAt.Equal(rendered.SyncedAt) {
				continue
			}
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(set.Config.Wait.Max.D())
			}
			schedule(minTime(now.Add(set.Config.Wait.Min.D()), deadline))
		case <-l.Renderer.RuntimeFailed():
			// A fallback reload that fails leaves the files due a
			// reload, which a pass runs.
			if len(l.Renderer.Fallback(ctx, set)) > 0 {
				retrySoon()
			}
		case <-l.Renderer.AheadFailed():
			retrySoon() // a failed pass, found after it ended
		case next := <-l.Sets:
			// The new set renders on the installed files: the checks of
			// the files applied ahead of them finish first.
			l.Renderer.WaitAhead(ctx)
			// The spellings endpointsBy kept go on with the new set,
			// as of the last render (the set may have been made while
			// a pass still rendered).
			next.Inherit(set)
			l.Renderer.switchSet(set, next)
			set = next
			if snap != nil && snap.Synced {
				pass()
			}
		case <-timer.C:
			if snap != nil && snap.Synced {
				pass()
			}
		}
	}
}

// RunOnce waits for the first synced snapshot (at most timeout), runs one
// pass and returns its result. It returns ErrSyncTimeout when no synced
// snapshot came in time.
func (l *Loop) RunOnce(ctx context.Context, set *Set, timeout time.Duration) (PassResult, error) {
	snap, err := WaitSynced(ctx, l.Source, timeout)
	if err != nil {
		return PassResult{}, err
	}
	res := l.Renderer.Pass(ctx, set, snap)
	settled := l.Renderer.Settle(ctx, set)
	res.Installed += settled.Installed
	res.Failures = append(res.Failures, settled.Failures...)
	l.Renderer.Health.setRendered(snap)
	return res, nil
}

// ErrSyncTimeout: the registry could not be listed in time.
var ErrSyncTimeout = fmt.Errorf("no full sync with the registry")

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
