package boltstore

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Every shape of a sound file passes checkPages: branch pages, values on
// overflow pages, nested and inline buckets, and pages freed by deletes.
func TestCheckPagesPassesSoundFiles(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucket([]byte("top"))
		if err != nil {
			return err
		}
		for i := range 5000 { // many leaves under branch pages
			if err := top.Put(fmt.Appendf(nil, "key-%05d", i), bytes.Repeat([]byte{byte(i)}, 40)); err != nil {
				return err
			}
		}
		big, err := top.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		for i := range 20 { // values of several pages each
			if err := big.Put(fmt.Appendf(nil, "v%d", i), bytes.Repeat([]byte{'x'}, 3000*(i+1))); err != nil {
				return err
			}
		}
		small, err := top.CreateBucket([]byte("inline"))
		if err != nil {
			return err
		}
		if err := small.Put([]byte("k"), []byte("v")); err != nil {
			return err
		}
		nested, err := big.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		_, err = nested.CreateBucket([]byte("empty"))
		return err
	})
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			top := tx.Bucket([]byte("top"))
			for i := 0; i < 5000; i += 3 {
				if err := top.Delete(fmt.Appendf(nil, "key-%05d", i)); err != nil {
					return err
				}
			}
			return top.Bucket([]byte("big")).Delete([]byte("v7"))
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = openBolt(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := verify(db); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		for _, want := range []string{"branch", "leaf", "free"} {
			found := false
			for id := 2; ; id++ {
				info, err := tx.Page(id)
				if err != nil || info == nil {
					break
				}
				found = found || info.Type == want
			}
			if !found {
				return fmt.Errorf("no %s page: the test does not try one", want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
