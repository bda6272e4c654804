package server

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A read that waits for its account's turn and whose request ends gets
// the request's cause and holds nothing; an account with no read holding
// or wanting a slot is forgotten.
func TestReadGateWaitEndsWithTheRequest(t *testing.T) {
	t.Parallel()
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	g := newReadGate(1, waiting)
	leave, err := g.enter(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	gone := errors.New("client gone")
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := g.enter(ctx, "a")
		done <- err
	}()
	for testGauge(waiting) != 1 {
		select {
		case err := <-done:
			t.Fatalf("a second read of the account entered (%v) while the first held the one slot", err)
		default:
		}
	}
	cancel(gone)
	if err := <-done; err != gone {
		t.Errorf("the waiting read ended with %v, want the request's cause", err)
	}
	if n := testGauge(waiting); n != 0 {
		t.Errorf("%v reads waiting after the wait ended", n)
	}
	leaveB, err := g.enter(context.Background(), "b") // another account's slot
	if err != nil {
		t.Fatal(err)
	}
	leaveB()
	leave()
	if n := len(g.accounts); n != 0 {
		t.Errorf("%d accounts remembered with no read holding or wanting a slot", n)
	}
	leave, err = g.enter(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	leave()
}

func testGauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}
