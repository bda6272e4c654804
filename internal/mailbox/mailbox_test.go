package mailbox

import (
	"sync"
	"testing"
)

func TestTakeGetsTheNewest(t *testing.T) {
	m := New[[]string]()
	if _, ok := m.Take(); ok {
		t.Fatal("Take on an empty mailbox reported a value")
	}
	m.Put([]string{"a"})
	m.Put([]string{"b"}) // before the reader looked: replaces a
	<-m.Ready()
	if v, ok := m.Take(); !ok || len(v) != 1 || v[0] != "b" {
		t.Fatalf("Take = %q, %v; want the newest, [b]", v, ok)
	}
	if _, ok := m.Take(); ok {
		t.Fatal("a second Take reported a value")
	}
}

// A reader that wakes on Ready always ends with the last value put,
// however the writes and reads interleave.
func TestReaderEndsWithTheLastPut(t *testing.T) {
	m := New[int]()
	const n = 10000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= n; i++ {
			m.Put(i)
		}
	})
	last := 0
	for last != n {
		<-m.Ready()
		if v, ok := m.Take(); ok {
			if v <= last {
				t.Fatalf("took %d after %d", v, last)
			}
			last = v
		}
	}
	wg.Wait()
}
