package watcher_test

import (
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
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

// When the registry answers again after failed requests, one line says
// so (not one per poll), with how many failed.
func TestWatcherLogsContactBackOnce(t *testing.T) {
	t.Parallel()
	srv, fail := pollsFailing(t)
	var logs testserver.Buffer
	w := start(t, watcher.Config{Client: client(t, srv, "watch-contact-back"), Wait: 100 * time.Millisecond, Outage: time.Minute,
		MaxBackoff: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	fail.Store(3)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "the registry answers again") {
		if time.Now().After(deadline) {
			t.Fatalf("no line says the registry answers again after the failed polls:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // more long-polls answered
	out := logs.String()
	if n := strings.Count(out, "the registry answers again"); n != 1 {
		t.Errorf("%d lines say the registry answers again; want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "level=INFO msg=\"the registry answers again\" failed_requests=3") {
		t.Errorf("the line does not count the 3 failed requests:\n%s", out)
	}
	if strings.Index(out, "the registry answers again") < strings.LastIndex(out, "follow the registry's feed") {
		t.Errorf("a failure is logged after the registry answered again:\n%s", out)
	}
}

// pollsFailing starts a server whose long-polls of the feed fail with 503
// while the returned count, decremented by each, stays at or above zero.
func pollsFailing(t *testing.T) (*testserver.Server, *atomic.Int32) {
	t.Helper()
	fail := new(atomic.Int32)
	srv := testserver.Start(t, testserver.Options{
		Wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/events") && r.URL.Query().Has("wait") && fail.Add(-1) >= 0 {
					http.Error(w, "down", http.StatusServiceUnavailable)
					return
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	return srv, fail
}

// A long-poll answered after failed ones clears the last error, events
// or not: on a quiet registry, /healthz does not show a failure of long
// ago as the watcher's state.
func TestWatcherClearsLastErrorOnceAnswered(t *testing.T) {
	t.Parallel()
	srv, fail := pollsFailing(t)
	w := start(t, watcher.Config{Client: client(t, srv, "watch-clears-error"), Wait: 100 * time.Millisecond, Outage: time.Minute,
		MaxBackoff: 50 * time.Millisecond})
	eventually(t, w, "the first sync", func(s *watcher.Snapshot) bool { return s.Synced })
	fail.Store(1)
	deadline := time.Now().Add(30 * time.Second)
	for w.Status().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatalf("the failed poll is not the last error: %+v", w.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		st := w.Status()
		if st.LastError == "" && st.LastErrorAt.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry answered long-polls since the failed one, but the status still shows its error: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
