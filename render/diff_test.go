package render

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// applyEdits rebuilds both sides from the edits.
func applyEdits(ops []edit) (a, b string) {
	var sa, sb strings.Builder
	for _, e := range ops {
		if e.op != '+' {
			sa.WriteString(e.line)
		}
		if e.op != '-' {
			sb.WriteString(e.line)
		}
	}
	return sa.String(), sb.String()
}

func TestLineEditsRebuildBothSides(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"", ""},
		{"a\n", ""},
		{"", "a\n"},
		{"a\nb\nc\n", "a\nc\n"},
		{"a\nb\nc\n", "a\nB\nc\nd\n"},
		{"x\ny\nz\n", "p\nq\n"},
		{"server 1;\nserver 2;\nserver 3;\n", "server 0;\nserver 1;\nserver 3;\nserver 4;\n"},
	} {
		ops, ok := lineEdits(splitLines(tc.a), splitLines(tc.b), maxEdits)
		if !ok {
			t.Fatalf("%q -> %q: gave up", tc.a, tc.b)
		}
		a, b := applyEdits(ops)
		if a != tc.a || b != tc.b {
			t.Errorf("%q -> %q: edits rebuild %q -> %q", tc.a, tc.b, a, b)
		}
	}
}

func TestUnifiedDiff(t *testing.T) {
	got := unifiedDiff("a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nc\nd\nE\nf\ng\nh\n")
	want := "@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
	if got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
	if got := unifiedDiff("", "new\n"); got != "@@ -0,0 +1,1 @@\n+new\n" {
		t.Fatalf("diff of a new file: %q", got)
	}
}

// A diff past maxEdits shows the new file whole, and costs little memory
// getting there: the memory of lineEdits grows with the square of the
// edits, and registry data (services renamed) decides how many there are.
func TestDiffOfManyChangesIsBounded(t *testing.T) {
	var a, b strings.Builder
	for i := range 4000 {
		fmt.Fprintf(&a, "server 10.0.0.%d:80;  # web-%d\n", i%250, i)
		fmt.Fprintf(&b, "server 10.1.0.%d:80;  # app-%d\n", i%250, i)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d := unifiedDiff(a.String(), b.String())
	runtime.ReadMemStats(&after)
	if !strings.Contains(d, "(rewritten)") {
		t.Errorf("a diff of 4000 changed lines is not shown as a rewrite:\n%.300s", d)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("the diff allocated %d MB", alloc>>20)
	}
}
