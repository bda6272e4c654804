package render

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/svcreg/svcreg/render/runtime"
)

// reloadWatch is one runtime API of a group, and the process that answered
// it before the group's reload.
type reloadWatch struct {
	api    runtime.Instances
	socket string
	before string
}

// reloadPoll is how often a reload's confirmation asks the runtime API.
const reloadPoll = 50 * time.Millisecond

// watchReload asks the runtime APIs of the group's templates which process
// answers them, before a reload. A runtime API nothing answers (the load
// balancer is not running yet) is left out: there is nothing to compare.
func (r *Renderer) watchReload(ctx context.Context, g *Group) []reloadWatch {
	var ws []reloadWatch
	seen := map[string]bool{}
	for _, t := range g.Templates {
		if t.Runtime == "" || seen[t.RuntimeSocket] {
			continue
		}
		seen[t.RuntimeSocket] = true
		a, err := t.runtimeAdapter(r.Log.With("group", g.Name))
		if err != nil {
			continue
		}
		api, ok := a.(runtime.Instances)
		if !ok {
			continue
		}
		before, err := api.Instance(ctx)
		if err != nil {
			r.Log.Debug("no process answers the runtime API; the reload is not confirmed", "group", g.Name, "socket", t.RuntimeSocket, "err", err)
			continue
		}
		ws = append(ws, reloadWatch{api: api, socket: t.RuntimeSocket, before: before})
	}
	return ws
}

// confirmReload waits until a new process answers each runtime API that
// answered before the reload, for up to the group's reload_timeout. A
// reload that did not take is an error, so that the pass fails (the
// previous files are restored and reloaded, and the change is retried)
// instead of counting a configuration as live that the load balancer does
// not run.
func (r *Renderer) confirmReload(ctx context.Context, g *Group, ws []reloadWatch) error {
	if len(ws) == 0 {
		return nil
	}
	timeout := g.ReloadTimeout
	if timeout <= 0 {
		timeout = DefaultReloadTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(reloadPoll)
	defer tick.Stop()
	for {
		var pending []string
		for _, w := range ws {
			if now, err := w.api.Instance(ctx); err != nil || now == w.before {
				pending = append(pending, fmt.Sprintf("%s (still %s)", w.socket, w.before))
			}
		}
		if len(pending) == 0 {
			r.Log.Debug("the reload took: a new process answers the runtime API", "group", g.Name)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // stopping
		case <-deadline.C:
			return fmt.Errorf("the reload did not take: after %s the runtime API at %s is not answered by a new process; the load balancer still runs its previous configuration", timeout, strings.Join(pending, ", "))
		case <-tick.C:
		}
	}
}
