package server

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A read that waits for its account's turn and whose request ends gets
// the request's cause and holds nothing; an account with no read holding
// or wanting a slot is forgotten.
func TestReadGateWaitEndsWithTheRequest(t *testing.T) {
	t.Parallel()
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	g := newReadGate(1, 2, waiting, prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}))
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

// Past maxWaiting reads of an account waiting, a read is refused at once
// with the rate-limit fault (its connection is not held); another
// account's reads, and the account's once one is done waiting, enter.
func TestReadGateRefusesPastMaxWaiting(t *testing.T) {
	t.Parallel()
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "r"})
	g := newReadGate(1, 2, waiting, refused)
	leave, err := g.enter(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan func(), 2)
	for range 2 {
		go func() {
			l, err := g.enter(context.Background(), "a")
			if err != nil {
				t.Error(err)
			}
			entered <- l
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); testGauge(waiting) != 2; runtime.Gosched() {
		if time.Now().After(deadline) { // a bound for a broken test
			t.Fatalf("%v reads waiting 30 s on, want 2", testGauge(waiting))
		}
	}
	_, err = g.enter(context.Background(), "a")
	var f *fault
	if !errors.As(err, &f) || f.Type != faultRateLimit || f.RetryAfter != time.Second || !strings.Contains(f.Details.(string), "Limit of 2 list reads of the account waiting at once") {
		t.Fatalf("a third waiting read: %v, want the rate-limit fault", err)
	}
	if n := testCounter(refused); n != 1 {
		t.Errorf("%v reads counted refused, want 1", n)
	}
	leaveB, err := g.enter(context.Background(), "b")
	if err != nil {
		t.Fatalf("another account's read: %v", err)
	}
	leaveB()
	leave()
	(<-entered)()
	(<-entered)()
	if n := testGauge(waiting); n != 0 {
		t.Errorf("%v reads waiting once all entered", n)
	}
	if n := len(g.accounts); n != 0 {
		t.Errorf("%d accounts remembered with no read holding or wanting a slot", n)
	}
}

func testCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
