package render

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testprog"
)

// A local user who may read the destination's directory but write
// nothing there (nobody, in a directory of root's that every user may
// search, as /etc/nginx/conf.d is) cannot hold the lock of root's
// renderer: each of its passes would wait the whole lock wait (minutes),
// then fail, for as long as that user liked.
func TestAnotherUserCannotHoldTheLock(t *testing.T) {
	testprog.NeedRoot(t, "to run a process as nobody")
	setpriv := testprog.Find(t, "setpriv", "to run flock as nobody (apt-get install util-linux)")
	flock := testprog.Find(t, "flock", "to hold the lock as another user (apt-get install util-linux)")
	t.Parallel()
	g := newGroup(t, upstreams)
	set := g.set(t, TemplateConfig{Reload: "echo reload >> " + g.log})
	// As an earlier version left it.
	if err := os.WriteFile(lockName(g.dest), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(lockName(g.dest), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if res := g.r.Pass(ctx, set, snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))); len(res.Failures) > 0 {
		t.Fatalf("first pass: %+v", res)
	}
	// flock -n exits 0 having taken the lock, 1 when it is held, and
	// another status when it cannot open the file.
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", flock, "-n", lockName(g.dest), "sleep", "30")
	// In a process group of its own, ended whole: flock's child (sleep)
	// holds the lock too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-exited })
	// Until flock has given up (it could not open the file) or holds
	// the lock.
	held := func() bool {
		f, err := os.Open(lockName(g.dest))
		if err != nil {
			return false
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			return true
		}
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	func() {
		for deadline := time.Now().Add(10 * time.Second); !held(); {
			select {
			case <-exited:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("flock, run as nobody, neither took the lock nor gave up")
			}
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res := g.r.Pass(sctx, set, snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.2"})))
	if res.Stopped {
		t.Errorf("the pass waited for the lock of a user (nobody) who may not write the destination's directory: %+v", res)
	}
	if mode, err := os.Stat(lockName(g.dest)); err == nil && mode.Mode().Perm()&0o077 != 0 {
		t.Errorf("lock file mode %v: other users may open it", mode.Mode().Perm())
	}
}
