package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
	"github.com/svcreg/svcreg/server/store"
)

// etcd refuses every write once its database reaches its space quota. A
// node says so (svcreg_store_etcd_space_exceeded, an error in its log)
// while it lasts, a node that starts then says what to do, and the nodes
// take writes again once an operator has compacted, defragmented and
// disarmed etcd, without a restart.
func TestSpaceExceeded(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{QuotaBackendBytes: 4 << 20})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	const prefix = "/space/"
	s, err := Open(ctx, cli, Options{Prefix: prefix, ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Another node, which has not seen the account before etcd fills.
	other, err := Open(ctx, cli, Options{Prefix: prefix, ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	full := func() float64 {
		var m dto.Metric
		if err := s.metrics.spaceFull.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}
	md := map[string]string{}
	for i := range 18 {
		md[fmt.Sprintf("k%02d", i)] = strings.Repeat("x", 255)
	}
	if _, err := s.CreateService(ctx, "t", store.NewService{ID: "svc", HeartbeatTimeout: 30, Metadata: md}); err != nil {
		t.Fatal(err)
	}
	// The same service updated again and again: its history, which etcd
	// keeps until it compacts, fills the quota.
	var werr error
	for i := 0; i < 5000 && werr == nil; i++ {
		md["k00"] = fmt.Sprintf("%0255d", i)
		werr = s.UpdateService(ctx, "t", "svc", store.ServiceUpdate{Metadata: &md})
	}
	if !errors.Is(werr, store.ErrUnavailable) || !isNoSpace(werr) {
		t.Fatalf("the writes ended with %v, want etcd's refusal for want of space", werr)
	}
	if full() != 1 {
		t.Errorf("svcreg_store_etcd_space_exceeded is %v while etcd refuses writes, want 1", full())
	}
	if _, err := s.Service(ctx, "t", "svc"); err != nil {
		t.Errorf("a read while etcd refuses writes: %v", err)
	}
	if _, err := other.Service(ctx, "t", "svc"); err != nil {
		t.Errorf("a read at a node that had not seen the account, while etcd refuses writes: %v", err)
	}
	if _, err := other.Account(ctx, "t"); err != nil {
		t.Errorf("the account at a node that had not seen it, while etcd refuses writes: %v", err)
	}
	if _, err := other.Account(ctx, "new"); !isNoSpace(err) {
		t.Errorf("a new account while etcd refuses writes: %v, want etcd's refusal for want of space", err)
	}
	if _, err := Open(ctx, cli, Options{Prefix: prefix, ReapInterval: -1}); err == nil || !strings.Contains(err.Error(), "compact, defragment and disarm") {
		t.Errorf("a node started while etcd refuses writes: %v, want an error saying what to do", err)
	}
	// The operator's remedy.
	resp, err := cli.Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	for _, ep := range c.Endpoints() {
		if _, err := cli.Defragment(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) == 0 {
		t.Fatalf("etcd's alarms: %v (%v)", alarms, err)
	}
	for _, a := range alarms.Alarms {
		if _, err := cli.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetConfig(context.Background(), "t", "after", "1"); err != nil {
		t.Fatalf("a write after the remedy: %v", err)
	}
	if full() != 0 {
		t.Errorf("svcreg_store_etcd_space_exceeded is %v once a write succeeded, want 0", full())
	}
}
