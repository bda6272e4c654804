package etcdstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store/etcdstore"
)

// The least safe slack covers the dead holder's lease and two etcd
// requests; a slack outside the bounds is refused before etcd is asked.
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
}
