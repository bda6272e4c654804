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
	// Work until getrusage counts 200 ms of CPU: on a loaded machine a
	// span of wall time may hold much less.
	var o1, s1 time.Duration
	for deadline := time.Now().Add(time.Minute); s1-s0 < 200*time.Millisecond; {
		for x := range 1 << 20 {
			_ = x * x
		}
		if o1, s1 = read(); time.Now().After(deadline) {
			t.Fatalf("a minute of work cost %v of CPU by getrusage", s1-s0)
		}
	}
	// /proc counts in ticks of 10 ms; allow a few of them.
	if diff := (o1 - o0) - (s1 - s0); diff < -30*time.Millisecond || diff > 30*time.Millisecond {
		t.Errorf("/proc says %v of CPU, getrusage %v", o1-o0, s1-s0)
	}
	if _, err := Of(-1); err == nil {
		t.Error("no error for a process that cannot exist")
	}
}

// A process that sleeps has its threads' sleeps counted.
func TestSleeps(t *testing.T) {
	s0, err := Sleeps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		time.Sleep(10 * time.Millisecond)
	}
	s1, err := Sleeps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s1 <= s0 {
		t.Errorf("sleeps went from %d to %d over five sleeps", s0, s1)
	}
	if _, err := Sleeps(1 << 30); err == nil {
		t.Error("Sleeps of a process that does not exist succeeded")
	}
}
