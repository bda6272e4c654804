package etcdstore_test

import (
	"context"
	"errors"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// A node opened in the other auth mode than the registry's fails to open
// before it joins: no node key of its own, no peer port, no part in the
// cluster (a --dev node on a --users cluster's prefix let anyone in as
// its users).
func TestOpenInTheOtherAuthModeJoinsNot(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	prefix := registryPrefix(t)
	cli := etcdtest.Client(t, c.Endpoints()...)
	open := func(mode string) (*etcdstore.Store, error) {
		return etcdstore.Open(context.Background(), cli, etcdstore.Options{Prefix: prefix, ReapInterval: -1, AuthMode: mode})
	}
	users, err := open(store.AuthUsers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	nodes := len(etcdGet(t, c, etcdstore.NodeKeys(users), clientv3.WithPrefix()).Kvs)
	dev, err := open(store.AuthDev)
	var refused *store.AuthModeError
	if !errors.As(err, &refused) || refused.Recorded != store.AuthUsers || refused.Wanted != store.AuthDev {
		if dev != nil {
			dev.Close()
		}
		t.Fatalf("a --dev node on a --users registry: %v, want an AuthModeError", err)
	}
	if n := len(etcdGet(t, c, etcdstore.NodeKeys(users), clientv3.WithPrefix()).Kvs); n != nodes {
		t.Errorf("%d node keys after the refused open, %d before: it joined", n, nodes)
	}
	again, err := open(store.AuthUsers)
	if err != nil {
		t.Fatalf("another --users node: %v", err)
	}
	again.Close()
}
