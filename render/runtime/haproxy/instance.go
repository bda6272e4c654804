package haproxy

import (
	"context"
	"fmt"
	"strings"

	"github.com/svcreg/svcreg/render/runtime"
)

// Instance is the HAProxy process that answers the socket (the current
// worker, through the master CLI too, or a daemon): its pid, and the time
// it started where HAProxy tells it (Start_time_sec), as
// "PID started UNIX-SECONDS". A reload replaces the process, and so does
// a restart, which in a container of its own gets the same pid again:
// the start time tells the two apart. It asks on a connection of its own:
// the adapter's may be with a process a reload replaced.
func (a *Adapter) Instance(ctx context.Context) (string, error) {
	out, err := a.cli.runOnce(ctx, "show info")
	if err != nil {
		return "", err
	}
	id := instanceOf(out)
	if id == "" {
		return "", &runtime.Failure{Step: "command", Err: fmt.Errorf("%s: no Pid in the answer to show info: %.200q", a.cli, out)}
	}
	return id, nil
}

// instanceOf is Instance as an answer to "show info" gives it; "" if it
// names no pid.
func instanceOf(info string) string {
	var pid, started string
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(l, "Pid: "); ok {
			pid = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(l, "Start_time_sec: "); ok {
			started = strings.TrimSpace(v)
		}
	}
	if pid == "" || started == "" {
		return pid
	}
	return pid + " started " + started
}
