package etcdstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// The least safe slack covers the dead holder's lease and two etcd
// requests; a slack outside the bounds is refused before etcd is asked, and
// the default one is never less.
func TestHeartbeatSlackBounds(t *testing.T) {
	if got := etcdstore.MinHeartbeatSlack(etcdstore.Options{}); got != 15*time.Second {
		t.Errorf("MinHeartbeatSlack with the defaults = %v, want 15s", got)
	}
	if got := etcdstore.MinHeartbeatSlack(etcdstore.Options{NodeTTL: 2 * time.Second, RequestTimeout: time.Second}); got != 4*time.Second {
		t.Errorf("MinHeartbeatSlack(NodeTTL 2s, RequestTimeout 1s) = %v, want 4s", got)
	}
	for _, slack := range []time.Duration{14 * time.Second, etcdstore.MaxHeartbeatSlack + time.Second} {
		_, err := etcdstore.Open(t.Context(), nil, etcdstore.Options{HeartbeatSlack: slack})
		if err == nil || !strings.Contains(err.Error(), "heartbeat slack") {
			t.Errorf("Open with a slack of %v: %v, want it refused", slack, err)
		}
	}
	for _, slack := range []time.Duration{0, 15 * time.Second, etcdstore.MaxHeartbeatSlack} {
		if err := etcdstore.CheckHeartbeatSlack(etcdstore.Options{HeartbeatSlack: slack}); err != nil {
			t.Errorf("CheckHeartbeatSlack(%v): %v", slack, err)
		}
	}
	// A node TTL is granted in whole seconds.
	if got := etcdstore.MinHeartbeatSlack(etcdstore.Options{NodeTTL: 2500 * time.Millisecond, RequestTimeout: time.Second}); got != 5*time.Second {
		t.Errorf("MinHeartbeatSlack(NodeTTL 2.5s, RequestTimeout 1s) = %v, want 5s", got)
	}
	// The default slack is twice the timeout, at least a minute, and at
	// least the least safe one.
	long := etcdstore.Options{NodeTTL: 30 * time.Second, RequestTimeout: 16 * time.Second}
	for _, c := range []struct {
		opts    etcdstore.Options
		timeout int
		want    time.Duration
	}{
		{etcdstore.Options{}, 10, time.Minute},
		{etcdstore.Options{}, 45, 90 * time.Second},
		{long, 10, 62 * time.Second},
		{long, 40, 80 * time.Second},
	} {
		if got := etcdstore.DefaultHeartbeatSlack(c.opts, c.timeout); got != c.want {
			t.Errorf("DefaultHeartbeatSlack(NodeTTL %v, RequestTimeout %v, timeout %ds) = %v, want %v", c.opts.NodeTTL, c.opts.RequestTimeout, c.timeout, got, c.want)
		}
	}
	if err := etcdstore.CheckHeartbeatSlack(long); err != nil {
		t.Errorf("CheckHeartbeatSlack(NodeTTL 30s, RequestTimeout 16s, default slack): %v", err)
	}
	long.HeartbeatSlack = 61 * time.Second
	if err := etcdstore.CheckHeartbeatSlack(long); err == nil {
		t.Errorf("CheckHeartbeatSlack(NodeTTL 30s, RequestTimeout 16s, slack 61s): accepted, want it refused")
	}
}
