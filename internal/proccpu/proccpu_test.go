package proccpu

import (
	"os"
	"testing"
	"time"
)

// Of, for this process, agrees with Self after some work.
func TestOfAgreesWithSelf(t *testing.T) {
	read := func() (of, self time.Duration) {
		of, err := Of(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if self, err = Self(); err != nil {
			t.Fatal(err)
		}
		return of, self
	}
	o0, s0 := read()
	for x, start := 0, time.Now(); time.Since(start) < 300*time.Millisecond; x++ {
		_ = x * x
	}
	o1, s1 := read()
	if s1-s0 < 200*time.Millisecond {
		t.Fatalf("300 ms of work cost %v of CPU by getrusage", s1-s0)
	}
	// /proc counts in ticks of 10 ms; allow a few of them.
	if diff := (o1 - o0) - (s1 - s0); diff < -30*time.Millisecond || diff > 30*time.Millisecond {
		t.Errorf("/proc says %v of CPU, getrusage %v", o1-o0, s1-s0)
	}
	if _, err := Of(-1); err == nil {
		t.Error("no error for a process that cannot exist")
	}
}
