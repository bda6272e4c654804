package etcdstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// Two nodes that both appended to an account cap its events at about the
// same time: it keeps MaxEvents, not fewer. A node that counted the
// events before the other's cap deleted the excess, and walked them after
// it, had counted the excess again in the events left, and deleted all
// but the newest.
func TestEventCapOfTwoNodesAtOnce(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	prefix := registryPrefix(t)
	ctx := context.Background()
	cli, err := etcdstore.NewClient(etcdstore.ClientConfig{Endpoints: c.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	const maxEvents = 10
	open := func() *etcdstore.Store {
		s, err := etcdstore.Open(ctx, cli, etcdstore.Options{Prefix: prefix, ReapInterval: -1,
			MaxEvents: maxEvents, MaxEventBytes: -1, EventCapInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	tenants := make([]string, 1)
	for i := range tenants {
		tenants[i] = fmt.Sprint(i + 1)
	}
	count := func(tenant string) int64 {
		resp, err := cli.Get(ctx, prefix+"ev/"+tenant+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	const trials = 96
	wrong := 0
	for trial := range trials {
		var wg sync.WaitGroup
		for _, tenant := range tenants {
			wg.Go(func() {
				for i := range maxEvents {
					for _, s := range []*etcdstore.Store{a, b} {
						if err := s.SetConfig(ctx, tenant, "k", fmt.Sprint(trial, i)); err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
		wg.Wait()
		// Other writes meanwhile vary how long each etcd request takes.
		noise := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-noise:
						return
					default:
					}
					cli.Put(ctx, prefix+"noise", fmt.Sprint(i))
				}
			})
		}
		wg.Go(func() { defer close(noise); etcdstore.CapEvents(a) })
		wg.Go(func() {
			time.Sleep(time.Duration(trial%48) * 250 * time.Microsecond)
			etcdstore.CapEvents(b)
		})
		wg.Wait()
		for _, tenant := range tenants {
			if n := count(tenant); n != maxEvents {
				wrong++
				t.Logf("trial %d: account %s kept %d events", trial, tenant, n)
			}
		}
	}
	if wrong > 0 {
		t.Errorf("%d times an account kept other than its %d events", wrong, maxEvents)
	}
}
