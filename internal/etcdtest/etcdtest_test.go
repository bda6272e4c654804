package etcdtest

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestMemberThatDiesIsStopped: a member whose process ends behind
// etcdtest's back is not Running, and Start starts it again on its data.
func TestMemberThatDiesIsStopped(t *testing.T) {
	c := Start(t, Options{})
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, key, "v")
		return err
	}
	if err := put("before"); err != nil {
		t.Fatal(err)
	}

	m := c.Members[0]
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	if m.Running() {
		t.Fatal("a member whose process was killed is Running")
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if !m.Running() {
		t.Fatal("the member is not Running after Start")
	}
	if err := put("after"); err != nil {
		t.Fatalf("put after the restart: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := cli.Get(ctx, "before"); err != nil || resp.Count != 1 {
		t.Fatalf("the key put before the kill: %v, %v", resp, err)
	}
}

// TestCPUTime: the members' CPU time grows while they work, and this
// process's, read the same way, agrees with getrusage.
func TestCPUTime(t *testing.T) {
	self := func() (proc, rusage time.Duration) {
		d, err := procCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return d, time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	p0, r0 := self()
	for x, start := 0, time.Now(); time.Since(start) < 300*time.Millisecond; x++ {
		_ = x * x
	}
	p1, r1 := self()
	// /proc counts in ticks of 10 ms; allow a few of them.
	if diff := (p1 - p0) - (r1 - r0); diff < -30*time.Millisecond || diff > 30*time.Millisecond {
		t.Errorf("/proc says %v of CPU, getrusage %v", p1-p0, r1-r0)
	}

	c := Start(t, Options{})
	before, err := c.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 2000 {
		if _, err := cli.Put(ctx, fmt.Sprint("k", i%10), "v"); err != nil {
			t.Fatal(err)
		}
	}
	after, err := c.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 50*time.Millisecond {
		t.Errorf("2000 puts cost the member %v of CPU, by CPUTime", after-before)
	}
	c.Stop()
	if d, err := c.CPUTime(); err != nil || d != 0 {
		t.Errorf("CPUTime of a stopped cluster: %v, %v", d, err)
	}
}
