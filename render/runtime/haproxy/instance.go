package haproxy

import (
	"context"
	"fmt"
	"strings"

	"github.com/svcreg/svcreg/render/runtime"
)

// Instance is the pid of the HAProxy process that answers the socket: the
// current worker (through the master CLI too), or a daemon. A reload
// replaces it. It asks on a connection of its own: the adapter's may be
// with a process a reload replaced.
func (a *Adapter) Instance(ctx context.Context) (string, error) {
	out, err := a.cli.runOnce(ctx, "show info")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(out, "\n") {
		if pid, ok := strings.CutPrefix(l, "Pid: "); ok && strings.TrimSpace(pid) != "" {
			return strings.TrimSpace(pid), nil
		}
	}
	return "", &runtime.Failure{Step: "command", Err: fmt.Errorf("%s: no Pid in the answer to show info: %.200q", a.cli, out)}
}
