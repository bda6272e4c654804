package etcdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The payloads of peer frames (peerwire.go) are binary: a version byte,
// then the fields in order, integers as varints and strings as a uvarint
// length and the bytes. A copy goes with every heartbeat answered from
// memory, and decoding a batch as JSON was the largest part of a copy's
// CPU at the peer. A node that meets another version refuses the batch
// or the answer as undecodable, and the holder writes those heartbeats to
// etcd: nodes of two versions work together, without answers from memory
// between them.
//
// A batch: version, from, from lease, to, to lease, the number of items
// (at most maxCopyBatch), and each item: tenant, id, heartbeat key
// revision, stored deadline, and its state (incarnation, sequence number,
// current and previous tokens, deadline, last seen, holder, holder lease,
// and a byte of flags: 1 loose, 2 ahead; a node of the version before,
// which knows only 0 and 1 there, refuses a batch with ahead set as
// undecodable).
//
// An answer: version, then either 0 and the number of items (at most
// maxCopyBatch) and a byte for each (1: taken), or 1 and the reason for
// taking none.

const peerWireVersion = 1

var errUndecodable = errors.New("undecodable")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendTo appends the batch's encoding to b.
func (cb *copyBatch) appendTo(b []byte) []byte {
	b = append(b, peerWireVersion)
	b = appendString(b, cb.From)
	b = binary.AppendVarint(b, cb.FromLease)
	b = appendString(b, cb.To)
	b = binary.AppendVarint(b, cb.ToLease)
	b = binary.AppendUvarint(b, uint64(len(cb.Items)))
	for i := range cb.Items {
		it := &cb.Items[i]
		b = appendString(b, it.Tenant)
		b = appendString(b, it.ID)
		b = binary.AppendVarint(b, it.HBRev)
		b = binary.AppendVarint(b, it.Stored)
		st := &it.State
		b = binary.AppendUvarint(b, st.Incarnation)
		b = binary.AppendUvarint(b, uint64(st.Seq))
		b = appendString(b, st.Cur)
		b = appendString(b, st.Prev)
		b = binary.AppendVarint(b, st.Deadline)
		b = binary.AppendVarint(b, st.LastSeen)
		b = appendString(b, st.Holder)
		b = binary.AppendVarint(b, st.HolderLease)
		var flags byte
		if st.Loose {
			flags |= flagLoose
		}
		if st.Ahead {
			flags |= flagAhead
		}
		b = append(b, flags)
	}
	return b
}

// The flags of a copy's state.
const (
	flagLoose = 1 << iota
	flagAhead
)

// decode sets the batch from p, all of it.
func (cb *copyBatch) decode(p []byte) error {
	d := decoder{p: p}
	if d.byte() != peerWireVersion {
		return fmt.Errorf("%w: not version %d", errUndecodable, peerWireVersion)
	}
	items := cb.Items[:0] // reused: a peer decodes a batch a round trip
	clear(items[:cap(items)])
	*cb = copyBatch{From: d.string(), FromLease: d.varint(), To: d.string(), ToLease: d.varint()}
	// Each item takes at least 13 bytes: no count the payload cannot
	// hold reserves memory. A holder sends at most maxCopyBatch: a batch
	// of more, which a frame could hold, is refused rather than taken in
	// one hold of the copies' lock.
	n := d.count(13)
	if n > maxCopyBatch {
		d.fail()
		n = 0
	}
	if n > 0 {
		cb.Items = slices.Grow(items, n)[:n]
	}
	for i := range cb.Items {
		it := &cb.Items[i]
		tenant, id := d.bytes(), d.bytes()
		it.HBRev, it.Stored = d.varint(), d.varint()
		st := &it.State
		st.Incarnation = d.uvarint()
		seq := d.uvarint()
		if seq > 1<<32-1 {
			d.err = errUndecodable
		}
		st.Seq = uint32(seq)
		cur, prev := d.bytes(), d.bytes()
		st.Deadline, st.LastSeen = d.varint(), d.varint()
		holder := d.bytes()
		st.HolderLease = d.varint()
		flags := d.byte()
		if flags&^(flagLoose|flagAhead) != 0 {
			d.fail()
		}
		st.Loose, st.Ahead = flags&flagLoose != 0, flags&flagAhead != 0
		// Two allocations, not five (an allocation a string was most of
		// what decoding a copy cost), split by how long they live: the
		// peer keeps the service's key for as long as it keeps a copy,
		// and the state's strings until the next copy replaces them.
		joinStrings([]*string{&it.Tenant, &it.ID}, tenant, id)
		joinStrings([]*string{&st.Cur, &st.Prev, &st.Holder}, cur, prev, holder)
	}
	return d.end()
}

// joinStrings sets *dst[i] to string(raw[i]) with one allocation for all:
// strings that are kept, and let go, together.
func joinStrings(dst []*string, raw ...[]byte) {
	var sb strings.Builder
	n := 0
	for _, r := range raw {
		n += len(r)
	}
	sb.Grow(n)
	for _, r := range raw {
		sb.Write(r)
	}
	all := sb.String()
	for i, r := range raw {
		*dst[i], all = all[:len(r)], all[len(r):]
	}
}

// appendTo appends the answer's encoding to b.
func (a *copyAnswer) appendTo(b []byte) []byte {
	b = append(b, peerWireVersion)
	if a.Err != "" {
		return appendString(append(b, 1), a.Err)
	}
	b = binary.AppendUvarint(append(b, 0), uint64(len(a.OK)))
	for _, ok := range a.OK {
		b = appendBool(b, ok)
	}
	return b
}

// decode sets the answer from p, all of it.
func (a *copyAnswer) decode(p []byte) error {
	d := decoder{p: p}
	if d.byte() != peerWireVersion {
		return fmt.Errorf("%w: not version %d", errUndecodable, peerWireVersion)
	}
	ok := a.OK[:0] // reused: a holder decodes an answer a round trip
	*a = copyAnswer{}
	switch d.byte() {
	case 0:
		if n := d.count(1); n > maxCopyBatch {
			d.fail()
		} else if n > 0 {
			a.OK = slices.Grow(ok, n)[:n]
		}
		for i := range a.OK {
			a.OK[i] = d.bool()
		}
	case 1:
		if a.Err = d.string(); a.Err == "" {
			d.err = errUndecodable
		}
	default:
		d.err = errUndecodable
	}
	return d.end()
}

// decoder reads a payload; past its first error, every read returns zero.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) fail() { d.err, d.p = errUndecodable, nil }

func (d *decoder) byte() byte {
	if d.err != nil || len(d.p) == 0 {
		d.fail()
		return 0
	}
	c := d.p[0]
	d.p = d.p[1:]
	return c
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail()
	return false
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint) }
func (d *decoder) varint() int64   { return readVarint(d, binary.Varint) }

// readVarint reads a varint with read (binary.Uvarint or binary.Varint).
func readVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.p)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

// bytes reads a string's bytes; they are the payload's.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.p)) {
		d.fail()
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}

// count reads a number of elements of at least min bytes each, refusing
// one the rest of the payload cannot hold.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.p)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

// end reports the first error, or an error if bytes are left over.
func (d *decoder) end() error {
	if d.err == nil && len(d.p) > 0 {
		d.fail()
	}
	return d.err
}
