package render

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/svcreg/svcreg/internal/mailbox"
	"github.com/svcreg/svcreg/internal/retry"
)

// Reloader re-reads the configuration and templates when asked (SIGHUP)
// and when a template file changes, and hands each valid new Set to the
// render loop; an invalid one is logged and the current Set kept. While
// WatchFiles runs, it watches the files of the current Set, following the
// list across reloads: the newest list always wins, however close together
// reloads come.
type Reloader struct {
	// Health and Metrics, if set, report a configuration or templates that
	// could not be loaded (and the ones in use kept) until a load succeeds.
	Health  *Health
	Metrics *Metrics

	log   *slog.Logger
	load  func() (Config, error)
	sets  chan<- *Set
	quiet time.Duration

	mu sync.Mutex // one reload at a time
	// current is the Set last loaded, written with mu held; Installed
	// reads it without, since a reload holds mu until the render loop
	// takes its Set.
	current atomic.Pointer[Set]
	sources *mailbox.Mailbox[[]string] // the files to watch after a reload
	// retry spaces the attempts to watch the files again after the
	// watch failed.
	retry retry.Backoff
}

// NewReloader returns a Reloader that starts from current, loads new
// configurations with load, and sends new Sets on sets.
func NewReloader(log *slog.Logger, load func() (Config, error), sets chan<- *Set, current *Set) *Reloader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{log: log, load: load, sets: sets,
		quiet: 200 * time.Millisecond, sources: mailbox.New[[]string](),
		retry: retry.Backoff{Min: time.Second, Max: time.Minute}}
	r.current.Store(current)
	return r
}

// Installed reports whether every destination of the templates last
// loaded (those in use, or about to be) has a file (Set.Installed): a
// reload may have added templates since the start.
func (r *Reloader) Installed() bool { return r.current.Load().Installed() }

// Reload loads the configuration and templates and, if they are valid,
// sends the new Set to the render loop; why goes to the log.
func (r *Reloader) Reload(ctx context.Context, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := r.load()
	if err != nil {
		r.log.Error("the config file could not be loaded; keeping the config and templates in use", "why", why, "err", err)
		r.report(why, fmt.Errorf("the config file could not be loaded: %w", err))
		return
	}
	set, err := NewSet(cfg)
	if err != nil {
		r.log.Error("the templates could not be read or parsed; keeping the templates in use", "why", why, "err", err)
		r.report(why, fmt.Errorf("the templates could not be read or parsed: %w", err))
		return
	}
	r.report(why, nil)
	old := r.current.Swap(set).Sources()
	if !slices.Equal(old, set.Sources()) {
		r.sources.Put(set.Sources())
	}
	select {
	case r.sets <- set:
	case <-ctx.Done():
		return
	}
	r.log.Info("re-read the config and templates", "why", why, "templates", set.Len())
}

// report records in Health and Metrics whether the last load succeeded.
func (r *Reloader) report(why string, err error) {
	if r.Health != nil {
		r.Health.loaded(why, err, time.Now())
	}
	if r.Metrics != nil {
		v := 0.0
		if err != nil {
			v = 1
		}
		r.Metrics.loadFailed.Set(v)
	}
}

// WatchFiles watches the current Set's template files and reloads when one
// changes, until ctx is done. If the files cannot be watched (their
// directory is gone, the inotify limits are reached) it logs so and tries
// again after a backoff, re-reading the templates once it does, since
// they may have changed meanwhile; Reload (SIGHUP) works all along.
func (r *Reloader) WatchFiles(ctx context.Context) error {
	r.mu.Lock()
	files := r.current.Load().Sources()
	r.sources.Take() // older than the current Set's list
	r.mu.Unlock()
	again := false // the watch failed: the files may have changed unseen
	for {
		wctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		started := time.Now()
		// After a failed watch, the files are read again once watched.
		var watching func()
		if again {
			watching = func() { r.Reload(ctx, "template files watched again") }
		}
		go func() {
			errc <- watchFiles(wctx, files, r.quiet, func() { r.Reload(ctx, "template file changed") }, watching)
		}()
		select {
		case <-ctx.Done():
			cancel()
			<-errc
			return nil
		case <-r.sources.Ready():
			cancel()
			<-errc
			if next, ok := r.sources.Take(); ok {
				files = next
			}
		case err := <-errc:
			cancel()
			if time.Since(started) > r.retry.Max {
				r.retry.Reset() // a watch that held for a while failed anew
			}
			d := r.retry.Next()
			r.log.Warn("cannot watch template files; trying again (until then, send SIGHUP after changing them)", "err", err, "retry_in", d)
			if retry.Sleep(ctx, d) != nil {
				return nil
			}
			if next, ok := r.sources.Take(); ok {
				files = next
			}
			again = true
			continue
		}
		again = false
	}
}
