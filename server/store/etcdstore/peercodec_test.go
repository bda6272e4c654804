package etcdstore

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/crypto/chacha20poly1305"
)

// Batches and answers decode to what was encoded, edge values included;
// every strict prefix of an encoding, trailing bytes, another version and
// counts the payload cannot hold are errors, never a partial batch.
func TestPeerCodec(t *testing.T) {
	batches := []copyBatch{
		{From: "node-a", FromLease: 7, To: "node-b", ToLease: 8},
		{From: "a", FromLease: math.MaxInt64, To: "b", ToLease: -1, Items: []copyItem{
			{Tenant: "t", ID: "svc", HBRev: 12, Stored: 1 << 60, State: hbRecord{
				Incarnation: math.MaxUint64, Seq: math.MaxUint32, Cur: "tok-2", Prev: "tok-1",
				Deadline: 1_700_000_000_000_000_000, LastSeen: 1_700_000_000_000, Holder: "a", HolderLease: 7, Loose: true}},
			{Tenant: "", ID: strings.Repeat("é", 40), HBRev: math.MinInt64, State: hbRecord{Deadline: -5}},
		}},
	}
	// Every field set, each to a value of its own: a field added to a
	// batch, an item or a state and left out of the encoding fails here.
	var full copyBatch
	full.Items = make([]copyItem, 2)
	fillFields(t, reflect.ValueOf(&full).Elem(), new(int))
	batches = append(batches, full)
	for _, cb := range batches {
		roundTrip(t, &cb, new(copyBatch))
	}
	// A value decoded into again and again, as a peer's connection and a
	// holder's sender do, holds what was encoded each time, nothing left
	// from before.
	var reused copyBatch
	for _, cb := range []copyBatch{full, batches[1], batches[0], full, batches[1]} {
		if err := reused.decode(cb.appendTo(nil)); err != nil || !reflect.DeepEqual(reused, cb) {
			t.Fatalf("decoded again: %+v, %v; want %+v", reused, err, cb)
		}
	}
	bad := map[string][]byte{
		"another version":         append([]byte{2}, batches[0].appendTo(nil)[1:]...),
		"JSON":                    []byte(`{"from":"a","items":[]}`),
		"a count it cannot hold":  append([]byte{peerWireVersion, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"one item more than fits": append([]byte{peerWireVersion, 0, 0, 0, 0, 2}, make([]byte, 25)...),
		"a string past its end":   {peerWireVersion, 5, 'a'},
		"a sequence over 32 bits": append(append([]byte{peerWireVersion, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0}, 0x80, 0x80, 0x80, 0x80, 0x10), 0, 0, 0, 0, 0, 0, 0),
		"a flag unknown":          {peerWireVersion, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4},
	}
	for what, raw := range bad {
		var got copyBatch
		if err := got.decode(raw); !errors.Is(err, errUndecodable) {
			t.Errorf("%s: decoded %+v, %v", what, got, err)
		}
	}
	// The last one is well-formed but for its flags; loose (1) is what
	// the version before sends, ahead (2) it refuses.
	for _, flags := range []byte{0, 1, 2, 3} {
		good := []byte{peerWireVersion, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, flags}
		var got copyBatch
		if err := got.decode(good); err != nil || got.Items[0].State.Loose != (flags&1 != 0) || got.Items[0].State.Ahead != (flags&2 != 0) {
			t.Errorf("a minimal item with flags %d: %+v, %v", flags, got, err)
		}
	}

	var fullAnswer copyAnswer
	fullAnswer.OK = make([]bool, 1)
	fillFields(t, reflect.ValueOf(&fullAnswer).Elem(), new(int))
	fullAnswer.Err = "" // an answer is either its flags or a refusal
	answers := []copyAnswer{{}, {OK: []bool{true, false, true}}, {Err: "not this node's current lease"}, fullAnswer}
	var reusedAnswer copyAnswer
	for _, a := range append(answers, answers...) {
		roundTrip(t, &a, new(copyAnswer))
		if err := reusedAnswer.decode(a.appendTo(nil)); err != nil || !reflect.DeepEqual(reusedAnswer, a) {
			t.Fatalf("decoded again: %+v, %v; want %+v", reusedAnswer, err, a)
		}
	}
	if err := new(copyAnswer).decode([]byte{peerWireVersion, 1, 0}); !errors.Is(err, errUndecodable) {
		t.Errorf("a refusal without a reason: %v", err)
	}
}

// fillFields sets every field of v, through structs and the elements of
// slices already made, to a value of its own that is not the zero value
// (n counts the values given out). A kind it does not know fails the test,
// so that a new field's kind is added here rather than left zero.
func fillFields(t *testing.T, v reflect.Value, n *int) {
	t.Helper()
	*n++
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillFields(t, v.Field(i), n)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Fatalf("fillFields: make the %s slice's elements first", v.Type())
		}
		for i := range v.Len() {
			fillFields(t, v.Index(i), n)
		}
	case reflect.String:
		v.SetString(fmt.Sprintf("value-%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n) << 40)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n) << (v.Type().Bits() - 8))
	default:
		t.Fatalf("fillFields: no value for a %s", v.Type())
	}
}

// roundTrip checks that v decodes into got as it was, and that every
// strict prefix of its encoding, and the encoding with a byte over, do not
// decode.
func roundTrip[T any, P interface {
	*T
	appendTo([]byte) []byte
	decode([]byte) error
}](t *testing.T, v P, got P) {
	t.Helper()
	raw := v.appendTo(nil)
	if err := got.decode(raw); err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("round trip: %+v, %v; want %+v", *got, err, *v)
	}
	for n := range len(raw) {
		if err := got.decode(raw[:n]); !errors.Is(err, errUndecodable) {
			t.Fatalf("%+v cut to %d of %d bytes: %v", *v, n, len(raw), err)
		}
	}
	if err := got.decode(append(raw, 0)); !errors.Is(err, errUndecodable) {
		t.Errorf("%+v with a byte over: %v", *v, err)
	}
}

// Nonces never repeat: each end of each connection counts up from a random
// prefix of its own. An answer opens only with its own request's nonce, and
// a request never opens as an answer.
func TestPeerNoncesAndBinding(t *testing.T) {
	a, b := newNonces(), newNonces()
	seen := map[string]bool{}
	for range 100 {
		for _, ns := range []*nonces{a, b} {
			n := ns.next(nil)
			if len(n) != nonceSize || seen[string(n)] {
				t.Fatalf("nonce %x repeated or of the wrong size", n)
			}
			seen[string(n)] = true
		}
	}
	if a.prefix == b.prefix {
		t.Error("two connections drew the same nonce prefix")
	}
	aead, err := chacha20poly1305.NewX(testPeerKey)
	if err != nil {
		t.Fatal(err)
	}
	req1, req2, an := a.next(nil), a.next(nil), b.next(nil)
	answer := aead.Seal(nil, an, []byte("ok"), answerData(nil, req1))
	if _, err := aead.Open(nil, an, answer, answerData(nil, req1)); err != nil {
		t.Fatalf("the answer does not open for its request: %v", err)
	}
	if _, err := aead.Open(nil, an, answer, answerData(nil, req2)); err == nil {
		t.Error("an answer opened as the answer to another request")
	}
	request := aead.Seal(nil, req1, []byte("batch"), requestAD)
	if _, err := aead.Open(nil, req1, request, answerData(nil, req1)); err == nil {
		t.Error("a request opened as an answer")
	}
}

// A copy's key strings (tenant, id) and its state's strings are decoded
// into separate allocations: the peer keeps a service's key for as long as
// it keeps its copy, and would otherwise keep the first copy's tokens with
// it, long after later copies replaced them.
func TestPeerCodecKeyApart(t *testing.T) {
	cb := copyBatch{From: "a", To: "b", Items: []copyItem{{Tenant: "tenant-0123456789", ID: "svc-0123456789",
		State: hbRecord{Cur: "0123456789abcdef0123456789abcdef-2", Prev: "0123456789abcdef0123456789abcdef-1", Holder: "a"}}}}
	var got copyBatch
	if err := got.decode(cb.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	it := got.Items[0]
	// The key's strings are decoded next to each other: the tenant's
	// allocation, if they share one, runs to the end of the id.
	key := uintptr(unsafe.Pointer(unsafe.StringData(it.Tenant)))
	keyEnd := uintptr(unsafe.Pointer(unsafe.StringData(it.ID))) + uintptr(len(it.ID))
	for _, s := range []string{it.State.Cur, it.State.Prev, it.State.Holder} {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p >= key && p <= keyEnd {
			t.Errorf("state string %q shares the key's allocation", s)
		}
	}
}
