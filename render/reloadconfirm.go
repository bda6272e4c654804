package render

import (
	"context"
	"errors"
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
// With a running --exec command (child is closed when it exits), a socket
// that does not answer yet is the command's, still starting: HAProxy
// ignores a SIGUSR2 then, or dies of it before it has set up its handlers.
// The reload waits until the socket answers, for up to reload_timeout.
func (r *Renderer) watchReload(ctx context.Context, g *Group, child <-chan struct{}) []reloadWatch {
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
		if err != nil && child != nil {
			before, err = r.awaitRuntime(ctx, g, api, t.RuntimeSocket, child)
		}
		if err != nil {
			r.Log.Debug("no process answers the runtime API; the reload is not confirmed", "group", g.Name, "socket", t.RuntimeSocket, "err", err)
			continue
		}
		ws = append(ws, reloadWatch{api: api, socket: t.RuntimeSocket, before: before})
	}
	return ws
}

// awaitRuntime waits until the runtime API of a command that is starting
// answers, for up to the group's reload_timeout.
func (r *Renderer) awaitRuntime(ctx context.Context, g *Group, api runtime.Instances, socket string, child <-chan struct{}) (string, error) {
	r.Log.Info("the command's runtime API does not answer yet; the reload waits until it has started", "group", g.Name, "socket", socket)
	deadline := time.NewTimer(reloadTimeout(g))
	defer deadline.Stop()
	tick := time.NewTicker(reloadPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-child:
			return "", errors.New("the command has exited")
		case <-deadline.C:
			r.Log.Warn("the command's runtime API does not answer; signalling it without waiting for it to start", "group", g.Name, "socket", socket, "waited", reloadTimeout(g))
			return "", fmt.Errorf("no answer within %s", reloadTimeout(g))
		case <-tick.C:
		}
		if id, err := api.Instance(ctx); err == nil {
			return id, nil
		}
	}
}

func reloadTimeout(g *Group) time.Duration {
	if g.ReloadTimeout <= 0 {
		return DefaultReloadTimeout
	}
	return g.ReloadTimeout
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
	timeout := reloadTimeout(g)
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
