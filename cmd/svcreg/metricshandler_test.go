package main

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// /metrics gathers for one request at a time, however many ask at once
// (it is open to whoever reaches the port, and costs tens of times a
// /healthz); a few more wait their turn and are answered, and past those a
// request gets 503 at once instead of a place in the queue.
func TestMetricsOneAtATime(t *testing.T) {
	t.Parallel()
	var inFlight, most atomic.Int32
	release := make(chan struct{})
	var gather prometheus.GathererFunc = func() ([]*dto.MetricFamily, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		return nil, nil
	}
	const waiting = 4
	placed := make(chan struct{}, waiting+2)
	srv := httptest.NewServer(oneAtATime(promhttp.HandlerFor(gather, promhttp.HandlerOpts{}), waiting, func() { placed <- struct{}{} }))
	defer srv.Close()
	get := func() int {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	codes := make(chan int, waiting+1)
	var wg sync.WaitGroup
	// The first takes its turn (and blocks in the gatherer); the others
	// wait behind it.
	for range waiting + 1 {
		wg.Go(func() { codes <- get() })
		<-placed
	}
	if c := get(); c != http.StatusServiceUnavailable {
		t.Errorf("past the waiting places: %d; want 503", c)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a waiting request got %d", c)
		}
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d gathers at once; want 1", m)
	}
}
