package watcher_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/watcher"
)

// A long-poll the registry answers without events is contact: on a quiet,
// healthy registry LastContact (and its metric) keeps moving after the
// list, so /healthz?max_stale does not call it stale.
func TestQuietRegistryIsContact(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	reg := prometheus.NewRegistry()
	w := start(t, watcher.Config{Client: client(t, srv, "watch-quiet"), Wait: 200 * time.Millisecond, Registerer: reg})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	listed := w.Status().LastSync
	deadline := time.Now().Add(30 * time.Second)
	for !w.Status().LastContact.After(listed) {
		if time.Now().After(deadline) {
			t.Fatalf("no contact after the list although the registry answers every long-poll: %+v", w.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := w.Status()
	metric := testserver.Metric(t, reg, "svcreg_watcher_last_contact_timestamp_seconds")
	if metric < float64(st.LastContact.Unix()) || metric <= float64(listed.UnixNano())/1e9 {
		t.Errorf("last_contact metric %f, want the status's %v (after the list at %v)", metric, st.LastContact, listed)
	}
}
