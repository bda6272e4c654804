package runtime

import "context"

// Instances is an Adapter that can tell which process answers its runtime
// API, so that the renderer can see a reload take effect: a load balancer
// that reloads replaces that process. A reload signal can be lost (HAProxy's
// master ignores a SIGUSR2 that arrives while it is still starting after
// the previous one), and a reload command that only sends it cannot know.
type Instances interface {
	// Instance identifies the process that answers the runtime API now
	// (HAProxy: its worker's pid and start time). An error means none answers.
	Instance(ctx context.Context) (string, error)
}
