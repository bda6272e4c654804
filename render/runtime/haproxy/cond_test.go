package haproxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/render/runtime"
)

// HAProxy skips the lines of a false .if block: a server line in one is
// not a server of the backend, and the runtime API must not add it.
func TestApplyServerInFalseConditionalBlock(t *testing.T) {
	t.Parallel()
	a, c := newCounter(t, "a"), newCounter(t, "c")
	v1 := backendsFile(srvLine("a", a, ""), ".if defined(SVCREG_NOT_SET)\n", ".endif\n")
	h := haproxytest.Start(t, v1, true)
	v2 := backendsFile(srvLine("a", a, ""), ".if defined(SVCREG_NOT_SET)\n", srvLine("c", c, ""), ".endif\n")
	ad, err := New(runtime.Settings{Socket: h.Socket})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ad.Plan([]byte(v1), []byte(v2))
	if err != nil {
		t.Log(err)
		return
	}
	if err := p.Apply(t.Context()); err != nil {
		t.Log(err)
		return
	}
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		seen[hit(t, &http.Client{}, h.URL())]++
	}
	if seen["c"] > 0 {
		t.Fatalf("requests went to %v: c, in a false .if block, was added", seen)
	}
}

// A section that starts inside a conditional block may not be loaded at
// all, or be one of two of the same name: its servers are not changed at
// runtime either.
//
// The changed section holds no conditional line of its own in the second
// case: the block opens before it and closes in the section after it, so
// only its place inside the block says it may not be loaded.
func TestPlanSectionInConditionalBlock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, old, from, to string }{
		{"one of two of the same name",
			"backend x\n    balance roundrobin\n.if defined(A)\nbackend api\n    balance roundrobin\n    server a 127.0.0.1:8001\n.else\nbackend api\n    balance roundrobin\n    server a 127.0.0.1:8002\n.endif\n",
			":8002", ":8003"},
		{"wholly inside the block",
			"backend x\n    balance roundrobin\n.if defined(A)\nbackend api\n    balance roundrobin\n    server a 127.0.0.1:8001\nbackend y\n    balance roundrobin\n.endif\n",
			":8001", ":8003"},
	} {
		next := strings.Replace(tc.old, tc.from, tc.to, 1)
		if p, err := planOf(t, tc.old, next); err == nil {
			t.Errorf("%s: want a reload, got %q", tc.name, p.Commands())
		}
	}
}
