package render

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A check that prints megabytes before it fails costs the renderer the
// end of its output, not all of it: the renderer may be a container's PID
// 1, and its memory the load balancer's too.
func TestCommandOutputBounded(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := runCommand(context.Background(), `head -c 100000000 /dev/zero | tr '\0' x; echo; echo the end; exit 1`, time.Minute)
	runtime.ReadMemStats(&after)
	var ce *CommandError
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Output, "…") || !strings.HasSuffix(ce.Output, "the end") || len(ce.Output) > maxOutput+len("…") {
		t.Fatalf("a failed command's output: %d bytes ending %q, %v; want its last %d bytes", len(ce.Output), ce.Output[max(0, len(ce.Output)-20):], err, maxOutput)
	}
	// Allocated while it ran (every goroutine's, so a bound, not a
	// measure): 100 MB of output kept whole would be several times that.
	if n := after.TotalAlloc - before.TotalAlloc; n > 20<<20 {
		t.Errorf("%d MB allocated for a command's 100 MB of output; want its end only", n>>20)
	}
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	b := &tailBuffer{max: 8}
	for _, w := range []string{"abc", "defgh", "ijklmnopqrstuvwxyz", "0123"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
		if len(b.b) > 2*b.max {
			t.Fatalf("holds %d bytes, bound %d", len(b.b), 2*b.max)
		}
	}
	if got := b.String(); got != "wxyz0123" || !b.dropped() {
		t.Errorf("kept %q (dropped %v); want the last 8 bytes", got, b.dropped())
	}
	// Cut when read, not only past twice the bound: dropped says so.
	mid := &tailBuffer{max: 8}
	mid.Write([]byte("abcde"))
	mid.Write([]byte("fghij"))
	if got := mid.String(); got != "cdefghij" || !mid.dropped() {
		t.Errorf("kept %q (dropped %v); want the last 8 bytes, dropped", got, mid.dropped())
	}
	small := &tailBuffer{max: 8}
	small.Write([]byte("short"))
	if small.String() != "short" || small.dropped() {
		t.Errorf("a short output: %q, dropped %v", small.String(), small.dropped())
	}
}
