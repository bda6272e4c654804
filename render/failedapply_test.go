package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/svcreg/svcreg/render/runtime"
)

// failingRuntime is a runtime API whose every change fails part way:
// Apply was called, and the live state may be anything.
type failingRuntime struct{}

func (failingRuntime) Plan(installed, rendered []byte) (runtime.Plan, error) {
	return failingPlan{}, nil
}

type failingPlan struct{}

func (failingPlan) Commands() []string { return []string{"set server b/s1 weight 2"} }
func (failingPlan) Apply(context.Context) error {
	return errors.New("the second command failed: the first is live")
}
func (failingPlan) Revert(context.Context) error { return nil }

func init() {
	runtimeAdapters["failing-test"] = func(runtime.Settings) (runtime.Adapter, error) { return failingRuntime{}, nil }
}

// A stop during the check that follows a runtime apply that failed part
// way still reloads the installed files (a stop waits for one reload):
// else the live state stays what the failed apply left.
func TestStopDuringTheCheckAfterAFailedApplyReloads(t *testing.T) {
	t.Parallel()
	g := newGroup(t, upstreams)
	checking := filepath.Join(g.dir, "checking")
	set := g.set(t, TemplateConfig{Runtime: "failing-test", RuntimeSocket: filepath.Join(g.dir, "sock"),
		Check: "touch " + checking + "; sleep 30", CheckTimeout: Duration(time.Minute),
		Reload: "echo reload >> " + g.log})
	writeFile(t, g.dir, "out.conf", "server 10.0.0.1;\n") // installed and live before
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			if _, err := os.Stat(checking); err == nil {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	res := g.r.Pass(ctx, set, web(2))
	if !res.Stopped || res.Failures != nil {
		t.Errorf("a pass stopped during its check: %+v; want it stopped, with no failure", res)
	}
	if n := g.reloads(t); n != 1 {
		t.Errorf("%d reloads; want the installed files reloaded once, over what the failed apply left", n)
	}
	if got := contents(g.dest); got != "server 10.0.0.1;\n" {
		t.Errorf("the destination holds %q; want the installed file kept", got)
	}
}
