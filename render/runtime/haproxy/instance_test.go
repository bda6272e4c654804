package haproxy

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
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
	if pids[h.Socket] != worker || pids["master:"+h.Master] != worker {
		t.Fatalf("Instance = %v; want the worker %s", pids, worker)
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
	if now != h.Worker(t) {
		t.Fatalf("after the reload Instance = %s; want the new worker %s", now, h.Worker(t))
	}

	a, _ = New(runtime.Settings{Socket: filepath.Join(t.TempDir(), "none.sock")})
	var f *runtime.Failure
	if _, err := a.(runtime.Instances).Instance(ctx); !errors.As(err, &f) || f.Step != "connect" {
		t.Fatalf("no HAProxy: %v; want a connect failure", err)
	}
}
