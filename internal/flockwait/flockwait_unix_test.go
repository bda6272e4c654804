//go:build unix

package flockwait_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/flockwait"
)

func TestLock(t *testing.T) {
	name := filepath.Join(t.TempDir(), "lock")
	open := func() *os.File {
		f, err := os.OpenFile(name, os.O_RDONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	holder, other := open(), open()
	if err := flockwait.Lock(context.Background(), holder, time.Now(), nil); err != nil {
		t.Fatalf("a free lock: %v", err)
	}
	waited := 0
	if err := flockwait.Lock(context.Background(), other, time.Now().Add(100*time.Millisecond), func() { waited++ }); !errors.Is(err, flockwait.ErrHeld) || waited != 1 {
		t.Errorf("a held lock: %v, waiting called %d times; want ErrHeld, once", err, waited)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := flockwait.Lock(ctx, other, time.Now().Add(time.Hour), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("a held lock, ctx ended: %v; want its error", err)
	}
	holder.Close()
	if err := flockwait.Lock(context.Background(), other, time.Now().Add(time.Hour), nil); err != nil {
		t.Errorf("the lock given back: %v", err)
	}
}
