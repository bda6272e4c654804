package etcdstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/etcdstore"
	"github.com/svcreg/svcreg/server/store/storetest"
)

func TestContract(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T, o store.Options) store.Store {
		cli, err := etcdstore.NewClient(etcdstore.ClientConfig{Endpoints: c.Endpoints(), DialTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Each store has a registry of its own in the one cluster.
		s, err := etcdstore.Open(ctx, cli, etcdstore.Options{
			Prefix: fmt.Sprintf("%s%d/", testPrefix, n.Add(1)),
			Clock:  o.Clock, DefaultLimits: o.DefaultLimits, Retention: o.Retention, MaxEvents: o.MaxEvents,
			MaxEventBytes: o.MaxEventBytes,
			ReapInterval:  -1, EventCapInterval: 100 * time.Millisecond,
		})
		if err != nil {
			cli.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
			cli.Close()
		})
		return s
	})
}
