// Package timeuuid implements the version-1 time UUIDs the Service Registry
// API uses for heartbeat tokens and event ids (spec §5.3, §8.1, §9.2).
//
// A UUID's 60-bit timestamp counts 100 ns ticks since 1582-10-15. The API
// orders ids by that timestamp and then by the remaining eight bytes compared
// unsigned (Cassandra's uuid comparator), never by their text.
package timeuuid

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"
)

// UUID is a version-1 UUID in its 16-byte binary form.
type UUID [16]byte

// gregorianOffset is the number of 100 ns ticks between 1582-10-15 and
// 1970-01-01.
const gregorianOffset = 0x01B21DD213814000

// Tick is the resolution of a UUID timestamp.
const Tick = 100 * time.Nanosecond

// Validation errors carry the exact messages the API reports (spec §5.2),
// capital letters included.
var (
	ErrInvalid     = errors.New("Invalid UUID")             //lint:ignore ST1005 the API's wire text
	ErrVariant     = errors.New("Unsupported UUID variant") //lint:ignore ST1005 the API's wire text
	ErrNotVersion1 = errors.New("UUID is not version 1")
)

// Ticks converts t to a UUID timestamp.
func Ticks(t time.Time) uint64 {
	return uint64(t.UnixNano()/100) + gregorianOffset
}

// TicksTime converts a UUID timestamp back to a time.
func TicksTime(ticks uint64) time.Time {
	n := int64(ticks - gregorianOffset)
	return time.Unix(n/1e7, (n%1e7)*100)
}

// New builds a version-1 UUID from a timestamp and the 62 bits that follow it
// (clock sequence and node), of which the top two are replaced by the
// RFC 4122 variant.
func New(ticks uint64, tail uint64) UUID {
	var u UUID
	binary.BigEndian.PutUint32(u[0:4], uint32(ticks))
	binary.BigEndian.PutUint16(u[4:6], uint16(ticks>>32))
	binary.BigEndian.PutUint16(u[6:8], uint16(ticks>>48)&0x0FFF|0x1000)
	binary.BigEndian.PutUint64(u[8:16], tail&(1<<62-1)|1<<63)
	return u
}

// Low is the smallest UUID at time t: "from t on" (spec §9.3).
func Low(t time.Time) UUID { return New(Ticks(t), 0) }

// High is the largest UUID at time t: "up to and including t".
func High(t time.Time) UUID { return New(Ticks(t), 1<<62-1) }

// Ticks returns the UUID's 60-bit timestamp.
func (u UUID) Ticks() uint64 {
	low := uint64(binary.BigEndian.Uint32(u[0:4]))
	mid := uint64(binary.BigEndian.Uint16(u[4:6]))
	hi := uint64(binary.BigEndian.Uint16(u[6:8]) & 0x0FFF)
	return hi<<48 | mid<<32 | low
}

// Time returns the UUID's timestamp as a time.
func (u UUID) Time() time.Time { return TicksTime(u.Ticks()) }

// Tail returns the 62 bits after the timestamp (clock sequence and node).
func (u UUID) Tail() uint64 { return binary.BigEndian.Uint64(u[8:16]) & (1<<62 - 1) }

// IsZero reports whether u is the zero value (never a valid v1 UUID).
func (u UUID) IsZero() bool { return u == UUID{} }

// Key returns a 16-byte key whose byte order is the API's UUID order: the
// timestamp big-endian, then bytes 8..15 as they are.
func (u UUID) Key() [16]byte {
	var k [16]byte
	binary.BigEndian.PutUint64(k[0:8], u.Ticks())
	copy(k[8:], u[8:])
	return k
}

// FromKey is the inverse of Key.
func FromKey(k []byte) UUID {
	var u UUID
	if len(k) != 16 {
		return u
	}
	u = New(binary.BigEndian.Uint64(k[0:8]), 0)
	copy(u[8:], k[8:])
	return u
}

// Compare orders a and b by timestamp, then by bytes 8..15 unsigned.
func Compare(a, b UUID) int {
	ta, tb := a.Ticks(), b.Ticks()
	switch {
	case ta < tb:
		return -1
	case ta > tb:
		return 1
	}
	for i := 8; i < 16; i++ {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// Next returns the smallest UUID strictly after every UUID with u's timestamp.
func (u UUID) Next() UUID { return New(u.Ticks()+1, 0) }

// String returns the lower-case 8-4-4-4-12 form.
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

// MarshalText implements encoding.TextMarshaler.
func (u UUID) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// Check applies the API's v1 UUID acceptance rule (spec §5.3) and returns
// one of ErrInvalid, ErrVariant or ErrNotVersion1, or nil.
func Check(s string) error {
	if len(s) != 36 {
		return ErrInvalid
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return ErrInvalid
			}
		default:
			if fromHex(c) < 0 {
				return ErrInvalid
			}
		}
	}
	if fromHex(s[19])&0xC != 8 {
		return ErrVariant
	}
	if s[14] != '1' {
		return ErrNotVersion1
	}
	return nil
}

// Parse checks s with Check and decodes it. Upper-case hex is accepted.
func Parse(s string) (UUID, error) {
	var u UUID
	if err := Check(s); err != nil {
		return u, err
	}
	var compact [32]byte
	copy(compact[0:8], s[0:8])
	copy(compact[8:12], s[9:13])
	copy(compact[12:16], s[14:18])
	copy(compact[16:20], s[19:23])
	copy(compact[20:32], s[24:36])
	if _, err := hex.Decode(u[:], compact[:]); err != nil {
		return u, ErrInvalid
	}
	return u, nil
}

func fromHex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
