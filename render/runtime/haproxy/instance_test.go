package haproxy

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/render/runtime"
)

// Instance is the worker's pid, through the stats socket and the master
// CLI alike; a reload changes it; no HAProxy is a connect failure.
func TestInstance(t *testing.T) {
	h := haproxytest.Start(t, backendsFile(), true)
	ctx := context.Background()
	pids := map[string]string{}
	for _, socket := range []string{h.Socket, "master:" + h.Master} {
		a, err := New(runtime.Settings{Socket: socket})
		if err != nil {
			t.Fatal(err)
		}
		pid, err := a.(runtime.Instances).Instance(ctx)
		if err != nil {
			t.Fatalf("%s: %v", socket, err)
		}
		pids[socket] = pid
	}
	worker := h.Worker(t)
	if pids[h.Socket] != pids["master:"+h.Master] || !strings.HasPrefix(pids[h.Socket], worker+" started ") {
		t.Fatalf("Instance = %v; want the worker %s and its start time", pids, worker)
	}

	if out, err := exec.Command("sh", "-c", h.ReloadCommand()).CombinedOutput(); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	a, _ := New(runtime.Settings{Socket: "master:" + h.Master})
	deadline := time.Now().Add(30 * time.Second)
	var now string
	for now == "" || now == worker {
		if time.Now().After(deadline) {
			t.Fatalf("no new worker answers after the reload (Instance = %q)", now)
		}
		time.Sleep(20 * time.Millisecond)
		now, _ = a.(runtime.Instances).Instance(ctx)
	}
	if !strings.HasPrefix(now, h.Worker(t)+" started ") {
		t.Fatalf("after the reload Instance = %s; want the new worker %s", now, h.Worker(t))
	}

	a, _ = New(runtime.Settings{Socket: filepath.Join(t.TempDir(), "none.sock")})
	var f *runtime.Failure
	if _, err := a.(runtime.Instances).Instance(ctx); !errors.As(err, &f) || f.Step != "connect" {
		t.Fatalf("no HAProxy: %v; want a connect failure", err)
	}
}

// A HAProxy restarted in a container of its own gets the pid it had (the
// first ones of a new pid namespace): its start time tells the new process
// from the old, so that a change applied to the old one is not taken as
// live in the new. Before, Instance was the pid alone.
func TestInstanceTellsARestartWithTheSamePid(t *testing.T) {
	old := instanceOf("Name: HAProxy\nPid: 3\nUptime_sec: 40\nStart_time_sec: 1796598084\n")
	restarted := instanceOf("Name: HAProxy\nPid: 3\nUptime_sec: 0\nStart_time_sec: 1796598125\n")
	if old == "" || old == restarted {
		t.Fatalf("Instance before the restart %q, after %q; want two", old, restarted)
	}
	// Before 2.5 there is no start time: the pid alone.
	if got := instanceOf("Pid: 17\nUptime_sec: 2\n"); got != "17" {
		t.Errorf("without Start_time_sec: %q, want 17", got)
	}
	if got := instanceOf("Name: HAProxy\n"); got != "" {
		t.Errorf("without Pid: %q, want none", got)
	}
}
