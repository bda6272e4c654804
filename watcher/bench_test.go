package watcher

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/svcreg/svcreg/registry"
)

func benchServices(n int) []registry.Service {
	out := make([]registry.Service, n)
	for i := range out {
		out[i] = registry.Service{ID: fmt.Sprintf("web-%05d", i), Tags: []string{"www"}, HeartbeatTimeout: 30,
			Metadata: map[string]string{"ip": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "port": "8080"}}
	}
	return out
}

// BenchmarkApply applies one event at a time (a join, then the remove of
// the same service) to a snapshot of N services, as the watcher does when
// events trickle in: the cost per event should not grow with N. The
// "render" variant also reads the sorted services once every 25 events,
// as a render pass at 250 changes/s with a 100ms debounce would.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, render := range []bool{false, true} {
			name := fmt.Sprintf("services=%d", n)
			if render {
				name += "/render-every-25"
			}
			b.Run(name, func(b *testing.B) {
				snap := NewSnapshot(benchServices(n), nil, "m", time.Now())
				events := make([]registry.Event, 64)
				for i := range events {
					typ := registry.ServiceJoin
					if i%2 == 1 {
						typ = registry.ServiceRemove
					}
					p, _ := json.Marshal(registry.Service{ID: fmt.Sprintf("new-%05d", i/2), Tags: []string{"www"}, HeartbeatTimeout: 30,
						Metadata: map[string]string{"ip": "10.9.9.9", "port": "80"}})
					events[i] = registry.Event{ID: fmt.Sprint(i), Type: typ, Payload: p}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					snap, _, _ = snap.Apply(events[i%len(events):i%len(events)+1], time.Time{})
					if render && i%25 == 0 {
						_ = snap.Services()
					}
					i++
				}
			})
		}
	}
}

// BenchmarkNewSnapshot builds a snapshot from a full list, as the watcher
// does at start, after an outage and at every periodic resync.
func BenchmarkNewSnapshot(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			list := benchServices(n)
			b.ReportAllocs()
			for b.Loop() {
				NewSnapshot(list, nil, "m", time.Time{})
			}
		})
	}
}
