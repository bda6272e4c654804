package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/svcreg/svcreg/server/store"
)

// A heartbeat batch whose time ran out while it waited (to be taken, for
// the linger, for a committer) fails as unavailable, as a request that
// timed out does: the client is told to retry (503), not that the server
// failed (500). Its time counts from the earliest heartbeat queued.
func TestHeartbeatBatchOutOfTime(t *testing.T) {
	// No etcd answers at this address; the batch's time has run out
	// before its request would be sent.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// An hour from the later heartbeat's queueing: the batch must go by
	// the earlier's, long past.
	s := &Store{cli: cli, opts: Options{RequestTimeout: time.Hour}}
	s.metrics = newMetrics(nil, func() bool { return false })
	late := &hbReq{op: clientv3.OpGet("k"), done: make(chan hbResult, 1), queued: time.Now().Add(-2 * time.Hour)}
	fresh := &hbReq{op: clientv3.OpGet("k"), done: make(chan hbResult, 1), queued: time.Now()}
	go s.commitBatch([]*hbReq{fresh, late})
	for _, r := range []*hbReq{fresh, late} {
		var res hbResult
		select {
		case res = <-r.done:
		case <-time.After(30 * time.Second):
			t.Fatal("a batch out of time was not answered: its time counted from its later heartbeat")
		}
		if !errors.Is(res.err, store.ErrUnavailable) || !errors.Is(res.err, context.DeadlineExceeded) {
			t.Errorf("a heartbeat of a batch out of time: %v, want unavailable (deadline exceeded)", res.err)
		}
	}
}
