package etcdtest

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// TestMemberThatDiesIsStopped: a member whose process ends behind
// etcdtest's back is not Running, and Start starts it again on its data.
func TestMemberThatDiesIsStopped(t *testing.T) {
	c := Start(t, Options{})
	cli := Client(t, c.Endpoints()...)
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

// TestCPUTime: the members' CPU time grows while they work, and is zero
// once they stopped. (That /proc agrees with getrusage is proccpu's test.)
func TestCPUTime(t *testing.T) {
	c := Start(t, Options{})
	before, err := c.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	cli := Client(t, c.Endpoints()...)
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
