package boltstore_test

import (
	"testing"

	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/boltstore"
	"github.com/svcreg/svcreg/server/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o store.Options) store.Store {
		s, err := boltstore.Open(t.TempDir(), boltstore.Options{
			Clock: o.Clock, DefaultLimits: o.DefaultLimits, Retention: o.Retention, MaxEvents: o.MaxEvents,
			MaxEventBytes: o.MaxEventBytes,
			ReapInterval:  -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		return s
	})
}
