package wrapper_test

import (
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A wrapper killed with SIGKILL can pass nothing on: the kernel's
// parent-death signal must take the command with it, or it runs on
// unregistered under init.
func TestKilledWrapperTakesTheCommandWithIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=deathsig", "--interval=1"}, sh(untilStop, f.dir)...)...)
	killLater(t, f.path("pid"))
	pid, err := strconv.Atoi(waitFile(t, f.path("pid")))
	if err != nil {
		t.Fatal(err)
	}
	// The command must survive the wrapper's own goroutines coming and
	// going for a while (the signal is tied to the forking thread).
	time.Sleep(200 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("the command died while the wrapper was running")
	}
	w.signal(syscall.SIGKILL)
	w.wait()
	waitFor(t, "the command to die with the wrapper", func() bool { return !alive(pid) })
}

// --no-parent-death-signal keeps the original behaviour: the command
// outlives the wrapper.
func TestNoParentDeathSignalKeepsTheCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=orphan-ok", "--interval=1", "--no-parent-death-signal"}, sh(untilStop, f.dir)...)...)
	killLater(t, f.path("pid"))
	pid, err := strconv.Atoi(waitFile(t, f.path("pid")))
	if err != nil {
		t.Fatal(err)
	}
	w.signal(syscall.SIGKILL)
	w.wait()
	// Give a parent-death signal, had one been set, ample time to land.
	for range 20 {
		if !alive(pid) {
			t.Fatal("the command died with the wrapper despite --no-parent-death-signal")
		}
		time.Sleep(25 * time.Millisecond)
	}
	touch(t, f.path("stop"))
	waitFor(t, "the command to stop", func() bool { return !alive(pid) })
}
