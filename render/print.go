package render

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/svcreg/svcreg/watcher"
)

// Print renders every template of set on snap and writes each full output
// to w under a "==> DESTINATION <==" line. It writes no file and runs no
// command; refused services are logged as in a pass. It returns the first
// render error, after printing the templates that did render.
func (r *Renderer) Print(ctx context.Context, set *Set, snap *watcher.Snapshot, w io.Writer) error {
	var first error
	for _, g := range set.Groups {
		for _, t := range g.Templates {
			out, err := r.render(ctx, g, t, snap)
			if err != nil {
				r.Log.Error("template failed to render", "template", t.Name(), "err", err)
				if first == nil {
					first = fmt.Errorf("render %s: %w", t.Name(), err)
				}
				continue
			}
			fmt.Fprintf(w, "==> %s <==\n", t.Destination)
			if _, err := w.Write(out); err != nil {
				return err
			}
			if len(out) > 0 && out[len(out)-1] != '\n' {
				fmt.Fprintln(w)
			}
		}
	}
	return first
}

// WaitSynced returns src's first synced snapshot, waiting at most timeout;
// ErrSyncTimeout when none came in time.
func WaitSynced(ctx context.Context, src Source, timeout time.Duration) (*watcher.Snapshot, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		if snap := src.Snapshot(); snap != nil && snap.Synced {
			return snap, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, fmt.Errorf("%w after %s", ErrSyncTimeout, timeout)
		case <-src.Updates():
		}
	}
}
