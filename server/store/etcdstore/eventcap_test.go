package etcdstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// Two nodes that both appended to an account cap its events at about the
// same time: it keeps MaxEvents, not fewer. Here the second node's cap
// runs whole between the first's count and its walk of the events: a
// walk of what is left then counted the excess again, and deleted all
// but the newest.
func TestEventCapOfTwoNodesAtOnce(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	prefix := registryPrefix(t)
	ctx := context.Background()
	cli := testClient(t, c.Endpoints())
	const maxEvents = 10
	open := func() *etcdstore.Store {
		return openStore(t, cli, etcdstore.Options{Prefix: prefix, ReapInterval: -1,
			MaxEvents: maxEvents, MaxEventBytes: -1, EventCapInterval: time.Hour})
	}
	a, b := open(), open()
	for i := range maxEvents {
		for _, s := range []*etcdstore.Store{a, b} {
			if err := s.SetConfig(ctx, "1", "k", fmt.Sprint(i, s == a)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ran := false
	etcdstore.AfterEventCount(a, func() {
		ran = true
		if err := etcdstore.CapEvents(b); err != nil {
			t.Error(err)
		}
	})
	if err := etcdstore.CapEvents(a); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Fatal("the first node's cap found nothing over it")
	}
	resp, err := cli.Get(ctx, prefix+"ev/1/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != maxEvents {
		t.Errorf("the account kept %d events, want its %d", resp.Count, maxEvents)
	}
}
