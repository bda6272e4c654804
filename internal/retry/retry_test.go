package retry

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := Backoff{Min: 50 * time.Millisecond, Max: 300 * time.Millisecond}
	want := []time.Duration{50, 100, 200, 300, 300, 300}
	for i, w := range want {
		w *= time.Millisecond
		if d := b.Next(); d < w/2 || d > w {
			t.Errorf("delay %d: %v, want %v..%v", i, d, w/2, w)
		}
	}
	b.Reset()
	if d := b.Next(); d > 50*time.Millisecond {
		t.Errorf("after reset: %v, want at most 50ms", d)
	}
}

func TestJitter(t *testing.T) {
	t.Parallel()
	for range 1000 {
		if d := Jitter(time.Second, 0.2); d < 800*time.Millisecond || d > time.Second {
			t.Fatalf("Jitter(1s, 0.2) = %v, want 800ms..1s", d)
		}
	}
	if d := Jitter(time.Second, 0); d != time.Second {
		t.Errorf("Jitter(1s, 0) = %v, want 1s", d)
	}
}

func TestSleepStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(0) on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep(1ms) = %v, want nil", err)
	}
}

func TestHeed(t *testing.T) {
	t.Parallel()
	b := Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second}
	for _, tc := range []struct{ wait, asked, lo, hi time.Duration }{
		{0, 0, 0, 0},
		{100 * time.Millisecond, time.Second, time.Second, 1500 * time.Millisecond},   // asked for longer: spread above it
		{time.Second, 100 * time.Millisecond, time.Second, time.Second},               // the backoff is longer
		{100 * time.Millisecond, time.Hour, 1500 * time.Millisecond, 2 * time.Second}, // never past Max, and spread below it
		{100 * time.Millisecond, 2 * time.Second, 1500 * time.Millisecond, 2 * time.Second},
		{1900 * time.Millisecond, time.Hour, 1900 * time.Millisecond, 2 * time.Second}, // not sooner than the backoff
		{0, 500 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond},    // an at-once retry waits too
		{0, 1800 * time.Millisecond, 1800 * time.Millisecond, 2 * time.Second},         // spread up to Max, not clamped to it
	} {
		seen := map[time.Duration]int{}
		for range 200 {
			got := b.Heed(tc.wait, tc.asked)
			if got < tc.lo || got > tc.hi {
				t.Fatalf("Heed(%v, %v) = %v, want %v..%v", tc.wait, tc.asked, got, tc.lo, tc.hi)
			}
			seen[got]++
		}
		// Clients a Retry-After turned away together come back spread,
		// not most of them at one wait (such as Max), unless the backoff
		// is that wait.
		if tc.lo < tc.hi && (len(seen) < 10 || tc.wait < tc.lo && slices.Max(slices.Collect(maps.Values(seen))) > 20) {
			t.Errorf("Heed(%v, %v) gave %d waits in 200 calls, up to %d of them the same: not spread", tc.wait, tc.asked, len(seen), slices.Max(slices.Collect(maps.Values(seen))))
		}
	}
}
