package boltstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/boltstore"
)

// savedDB makes a database under a new directory with one account, a
// service and a configuration value, closes it, and returns its directory
// and the bytes of its file.
func savedDB(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.CreateService(ctx, "1", store.NewService{ID: "svc1", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConfig(ctx, "1", "key", "value"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return dir, raw
}

// A flipped bit in the name of an account's "services" bucket leaves a
// file bbolt's check passes (the keys stay in order): Open must say the
// database is damaged, not panic.
func TestOpenAccountMissingABucketIsDamaged(t *testing.T) {
	t.Parallel()
	dir, raw := savedDB(t)
	n := bytes.Count(raw, []byte("services"))
	if n == 0 {
		t.Fatal("no bucket name to damage")
	}
	raw = bytes.ReplaceAll(raw, []byte("services"), []byte("servicet"))
	if err := os.WriteFile(filepath.Join(dir, boltstore.FileName), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Open of a damaged database panicked: %v", r)
		}
	}()
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err == nil {
		s.Close()
	}
	var damaged *boltstore.DamagedError
	if !errors.As(err, &damaged) {
		t.Fatalf("Open: %v; want a DamagedError", err)
	}
}

// openInChild, set, names the database directory that
// TestOpenDamagedPageTree's child process opens: a fault there, past
// recovery, ends only the child.
const openInChild = "BOLTSTORE_TEST_OPEN_DIR"

// bbolt checks a file on a goroutine of its own, where a read outside the
// memory map is a fatal fault, not a panic; a page claiming billions of
// overflow pages makes the check allocate for each. A page tree damaged
// so must give a DamagedError.
func TestOpenDamagedPageTree(t *testing.T) {
	if dir := os.Getenv(openInChild); dir != "" {
		s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
		if err == nil {
			s.Close()
		}
		fmt.Printf("Open: %v\n", err)
		os.Exit(0)
	}
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(root []byte)
	}{
		// Element 0 of the leaf (flags, pos, ksize, vsize): its key
		// starts 1 GiB past it.
		{"a key outside the file", func(root []byte) { binary.NativeEndian.PutUint32(root[16+4:], 1<<30) }},
		{"two billion overflow pages", func(root []byte) { binary.NativeEndian.PutUint32(root[12:], 1<<31) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, raw := savedDB(t)
			meta, pageSize := newerMeta(raw)
			root := raw[int(binary.NativeEndian.Uint64(meta[32:]))*pageSize:]
			if flags := binary.NativeEndian.Uint16(root[8:]); flags != 0x02 {
				t.Fatalf("the root page has flags %#x; want a leaf", flags)
			}
			tc.damage(root)
			if err := os.WriteFile(filepath.Join(dir, boltstore.FileName), raw, 0o600); err != nil {
				t.Fatal(err)
			}
			// Before checkPages, the first faulted and the second ran for
			// ever.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOpenDamagedPageTree$", "-test.count=1")
			cmd.Env = append(os.Environ(), openInChild+"="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Open: the database") || !strings.Contains(string(out), "is damaged") {
				t.Fatalf("Open: %v; want a DamagedError. Output:\n%.600s", err, out)
			}
		})
	}
}

// Any one damaged byte of a file, wherever it is, leaves Open either
// working or saying the database is damaged, and the writes after it
// working or failing: never a crash (a fault or a panic would end this
// test's process) nor a hang. Every 61st byte, each
// flipped whole.
func TestOpenSurvivesAnyDamagedByte(t *testing.T) {
	t.Parallel()
	_, raw := savedDB(t)
	for i := 0; i < len(raw); i += 61 {
		b := bytes.Clone(raw)
		b[i] ^= 0xff
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, boltstore.FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
		var damaged *boltstore.DamagedError
		switch {
		case err == nil:
			// Writes, which free and allocate pages, may fail, but not
			// crash.
			s.CreateService(context.Background(), "1", store.NewService{ID: "svc2", HeartbeatTimeout: 30})
			s.SetConfig(context.Background(), "2", "key", "value")
			s.Close()
		case !errors.As(err, &damaged):
			t.Errorf("byte %d flipped: %v; want a DamagedError", i, err)
		}
	}
}

// The free list page is no part of the page tree checkPages walks. One
// damaged byte of its header (overflow 0 -> 1), on the file of a store
// just created, passes verify and bbolt's check, and bbolt then frees a
// page past the pages in use, hands it out, and panics on the first write.
func TestOpenFreelistPastThePagesInUseIsDamaged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, boltstore.FileName)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	meta, pageSize := newerMeta(raw)
	freelist, hwm := binary.NativeEndian.Uint64(meta[48:]), binary.NativeEndian.Uint64(meta[56:])
	if freelist != hwm-1 {
		t.Fatalf("the free list is page %d of %d; the test wants the last", freelist, hwm)
	}
	fl := raw[int(freelist)*pageSize:]
	if flags := binary.NativeEndian.Uint16(fl[8:]); flags != 0x10 {
		t.Fatalf("page %d has flags %#x; want the free list", freelist, flags)
	}
	binary.NativeEndian.PutUint32(fl[12:], 1) // one overflow page: page hwm
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = boltstore.Open(dir, boltstore.Options{ReapInterval: -1})
	var damaged *boltstore.DamagedError
	if errors.As(err, &damaged) {
		return
	}
	if err != nil {
		t.Fatalf("Open: %v; want a DamagedError", err)
	}
	defer s.Close()
	panicked := func() (r any) {
		defer func() { r = recover() }()
		for i := range 20 {
			if _, err := s.CreateService(context.Background(), "1", store.NewService{ID: fmt.Sprintf("svc-%d", i), HeartbeatTimeout: 30}); err != nil {
				return err
			}
		}
		return nil
	}()
	t.Fatalf("Open of a file whose free list runs past the pages in use succeeded; want a DamagedError. Writes then: %v", panicked)
}

// newerMeta returns the meta page of the newer transaction of the bbolt
// file raw, and its page size. In a meta page: the page size at 24, the
// root bucket's page at 32, the free list at 48, the high-water mark at
// 56, the transaction id at 64.
func newerMeta(raw []byte) (meta []byte, pageSize int) {
	pageSize = int(binary.NativeEndian.Uint32(raw[24:]))
	meta = raw[:pageSize]
	if binary.NativeEndian.Uint64(raw[pageSize+64:]) > binary.NativeEndian.Uint64(meta[64:]) {
		meta = raw[pageSize : 2*pageSize]
	}
	return meta, pageSize
}
