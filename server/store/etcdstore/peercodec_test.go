package etcdstore

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
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
	for _, cb := range batches {
		raw := cb.appendTo(nil)
		var got copyBatch
		if err := got.decode(raw); err != nil || !reflect.DeepEqual(got, cb) {
			t.Fatalf("batch round trip: %+v, %v; want %+v", got, err, cb)
		}
		for n := range len(raw) {
			if err := got.decode(raw[:n]); !errors.Is(err, errUndecodable) {
				t.Fatalf("a batch cut to %d of %d bytes: %v", n, len(raw), err)
			}
		}
		if err := got.decode(append(raw, 0)); !errors.Is(err, errUndecodable) {
			t.Errorf("a batch with a byte over: %v", err)
		}
	}
	bad := map[string][]byte{
		"another version":          append([]byte{2}, batches[0].appendTo(nil)[1:]...),
		"JSON":                     []byte(`{"from":"a","items":[]}`),
		"a count it cannot hold":   append([]byte{peerWireVersion, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"a string past its end":    {peerWireVersion, 5, 'a'},
		"a sequence over 32 bits":  append(append([]byte{peerWireVersion, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0}, 0x80, 0x80, 0x80, 0x80, 0x10), 0, 0, 0, 0, 0, 0, 0),
		"a flag other than 0 or 1": {peerWireVersion, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2},
	}
	for what, raw := range bad {
		var got copyBatch
		if err := got.decode(raw); !errors.Is(err, errUndecodable) {
			t.Errorf("%s: decoded %+v, %v", what, got, err)
		}
	}
	// The last one is well-formed but for its flag.
	good := []byte{peerWireVersion, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	if err := new(copyBatch).decode(good); err != nil {
		t.Errorf("a minimal item: %v", err)
	}

	for _, a := range []copyAnswer{{}, {OK: []bool{true, false, true}}, {Err: "not this node's current lease"}} {
		raw := a.appendTo(nil)
		var got copyAnswer
		if err := got.decode(raw); err != nil || !reflect.DeepEqual(got, a) {
			t.Errorf("answer round trip: %+v, %v; want %+v", got, err, a)
		}
		for n := range len(raw) {
			if err := got.decode(raw[:n]); !errors.Is(err, errUndecodable) {
				t.Errorf("an answer cut to %d of %d bytes: %v", n, len(raw), err)
			}
		}
	}
	if err := new(copyAnswer).decode([]byte{peerWireVersion, 1, 0}); !errors.Is(err, errUndecodable) {
		t.Errorf("a refusal without a reason: %v", err)
	}
}
