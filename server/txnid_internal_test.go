package server

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
)

// A transaction id is the server's prefix and its counter encrypted,
// written out in hex.
func TestTxnIDIsTheCounterEncrypted(t *testing.T) {
	s := New(Config{})
	for want := uint64(1); want <= 300; want++ {
		id := s.nextTxnID()
		suffix, ok := strings.CutPrefix(id, s.txnPrefix)
		block, err := hex.DecodeString(suffix)
		if !ok || err != nil || len(block) != 16 {
			t.Fatalf("id %q: want the prefix %q and 32 hex digits", id, s.txnPrefix)
		}
		s.txnKey.Decrypt(block, block)
		if got := binary.BigEndian.Uint64(block[8:]); got != want || binary.BigEndian.Uint64(block[:8]) != 0 {
			t.Fatalf("id %q holds %x; want the counter %d", id, block, want)
		}
	}
}

func BenchmarkTxnID(b *testing.B) {
	s := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		_ = s.nextTxnID()
	}
}
