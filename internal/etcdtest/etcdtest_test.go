package etcdtest

import (
	"context"
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
