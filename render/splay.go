package render

import (
	"context"
	"math/rand/v2"
	"time"
)

// splay waits a random time up to the group's splay before its files are
// installed and reloaded, so that a fleet of renderers seeing the same
// change does not reload every load balancer at the same instant. It
// returns ctx's error when stopped meanwhile; nothing was installed then.
func (r *Renderer) splay(ctx context.Context, g *Group) error {
	if g.Splay <= 0 || r.Dry {
		return nil
	}
	pick := r.splayDelay
	if pick == nil {
		pick = rand.N[time.Duration]
	}
	d := pick(g.Splay)
	r.Log.Debug("splay before install and reload", "group", g.Name, "delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
