package haproxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/render/runtime"
)

// BenchmarkApplyAndInstance measures, in one run, a change applied
// through the runtime API (one server's weight, planned and applied, its
// state read back) and an Instance call (show info), of which the renderer
// adds two to each change it applies ahead of the check: one when it
// hands the change to the checker, one after the install
// (render.reloadedMeanwhile). Neither is on the path between the event and
// the change taking effect.
//
//	go test -run '^$' -bench ApplyAndInstance -benchtime 3000x ./render/runtime/haproxy/
func BenchmarkApplyAndInstance(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	file := func(weight int) []byte {
		return fmt.Appendf(nil, "backend api\n    balance roundrobin\n    server a 127.0.0.1:%d weight %d\n", port, weight)
	}
	h := haproxytest.Start(b, string(file(1)), false)
	a, err := New(runtime.Settings{Socket: h.Socket})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("apply", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			p, err := a.Plan(file(1+i%2), file(1+(i+1)%2))
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Apply(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("instance", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.(runtime.Instances).Instance(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
