package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
)

// Heartbeat tokens are v1 UUIDs whose time is the service's deadline (spec
// §8.1). The 62 bits after the time hold a 22-bit sequence number, counting
// the service's heartbeats, and a 40-bit MAC over the tenant, the service id,
// its incarnation, the sequence number and the deadline.
//
// The MAC lets a store recognise a token it issued without having stored it:
// heartbeats are kept in memory and checkpointed now and then, and after a
// restart a store accepts any token of the right service whose sequence
// number is at or after the checkpointed one (design item 10).
const (
	seqBits = 22
	macBits = 40
	// SeqWindow is how far past the checkpointed sequence number a token is
	// still accepted after a restart.
	SeqWindow = 1 << (seqBits - 1)
)

// Minter issues and recognises heartbeat tokens. Its key must stay the same
// across restarts; stores keep it with their data.
type Minter struct {
	pool sync.Pool
}

// NewMinter returns a Minter keyed by key.
func NewMinter(key []byte) *Minter {
	k := append([]byte(nil), key...)
	return &Minter{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}
}

// TokenKey identifies the service a token belongs to.
type TokenKey struct {
	Tenant      string
	ID          string
	Incarnation uint64
}

// Mint returns the token with sequence number seq and the given deadline.
func (m *Minter) Mint(k TokenKey, seq uint32, deadline time.Time) timeuuid.UUID {
	ticks := timeuuid.Ticks(deadline)
	seq &= 1<<seqBits - 1
	return timeuuid.New(ticks, uint64(seq)<<macBits|m.mac(k, seq, ticks))
}

// Check reports whether tok was minted for k, and its sequence number.
func (m *Minter) Check(k TokenKey, tok timeuuid.UUID) (seq uint32, ok bool) {
	tail := tok.Tail()
	seq = uint32(tail >> macBits)
	return seq, tail&(1<<macBits-1) == m.mac(k, seq, tok.Ticks())
}

// SeqAtOrAfter reports whether sequence number s is at or after floor,
// counting modulo 2^22, within SeqWindow.
func SeqAtOrAfter(s, floor uint32) bool {
	return (s-floor)&(1<<seqBits-1) < SeqWindow
}

// SeqSince returns how far s is past from, counting modulo 2^22.
func SeqSince(s, from uint32) uint32 { return (s - from) & (1<<seqBits - 1) }

// NextSeq returns the sequence number after s.
func NextSeq(s uint32) uint32 { return (s + 1) & (1<<seqBits - 1) }

func (m *Minter) mac(k TokenKey, seq uint32, ticks uint64) uint64 {
	h := m.pool.Get().(hash.Hash)
	defer m.pool.Put(h)
	h.Reset()
	var buf [20]byte
	h.Write([]byte(k.Tenant))
	h.Write([]byte{0})
	h.Write([]byte(k.ID))
	h.Write([]byte{0})
	binary.BigEndian.PutUint64(buf[0:8], k.Incarnation)
	binary.BigEndian.PutUint32(buf[8:12], seq)
	binary.BigEndian.PutUint64(buf[12:20], ticks)
	h.Write(buf[:])
	var sum [sha256.Size]byte
	s := h.Sum(sum[:0])
	return binary.BigEndian.Uint64(s[:8]) >> (64 - macBits)
}
