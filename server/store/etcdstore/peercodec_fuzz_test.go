package etcdstore

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
)

// Whatever a peer sends, decoding it neither panics nor reserves memory
// the payload cannot hold, and what decodes encodes to the same again; a
// batch decoded into a buffer a larger batch used keeps none of it.
func FuzzPeerCodec(f *testing.F) {
	full := copyBatch{From: "a", FromLease: 1, To: "b", ToLease: 2, Items: []copyItem{
		{Tenant: "t", ID: "svc", HBRev: 3, Stored: 4, State: hbRecord{Incarnation: 5, Seq: 6, Cur: "c", Prev: "p",
			Deadline: 7, LastSeen: 8, Holder: "h", HolderLease: 9, Loose: true}},
		{Tenant: "u", ID: "svc2"},
	}}
	f.Add(full.appendTo(nil))
	f.Add((&copyBatch{}).appendTo(nil))
	f.Add((&copyAnswer{OK: []bool{true, false}}).appendTo(nil))
	f.Add((&copyAnswer{Err: "no"}).appendTo(nil))
	f.Add([]byte{peerWireVersion, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > maxFrame {
			return
		}
		in := bytes.Clone(p)
		var b copyBatch
		b.Items = make([]copyItem, 3, 8) // a reused buffer, as at a peer
		b.Items[2] = copyItem{Tenant: "left over"}
		if err := b.decode(p); err == nil {
			if len(b.Items) > len(p)/13 {
				t.Fatalf("%d items from %d bytes", len(b.Items), len(p))
			}
			var again copyBatch
			if err := again.decode(b.appendTo(nil)); err != nil || !sameBatch(&b, &again) {
				t.Fatalf("re-encoded batch: %+v, %v; want %+v", again, err, b)
			}
		}
		var a copyAnswer
		a.OK = make([]bool, 2, 4)
		if err := a.decode(p); err == nil {
			if len(a.OK) > len(p) {
				t.Fatalf("%d answers from %d bytes", len(a.OK), len(p))
			}
			var again copyAnswer
			if err := again.decode(a.appendTo(nil)); err != nil || !reflect.DeepEqual(a.Err, again.Err) || len(a.OK) != len(again.OK) {
				t.Fatalf("re-encoded answer: %+v, %v; want %+v", again, err, a)
			}
		}
		// As a stream of frames: read until it ends, never past maxFrame.
		r := bufio.NewReader(bytes.NewReader(p))
		var fb frameBuf
		for {
			nonce, body, err := fb.read(r, nil)
			if err != nil {
				break
			}
			if len(nonce) != nonceSize || len(body) < minFrame-nonceSize || cap(fb.b) > 2*maxFrame {
				t.Fatalf("frame: nonce %d bytes, body %d, buffer %d", len(nonce), len(body), cap(fb.b))
			}
			fb.done()
		}
		if !bytes.Equal(in, p) {
			t.Fatal("decoding changed its input")
		}
	})
}

func sameBatch(a, b *copyBatch) bool {
	if a.From != b.From || a.FromLease != b.FromLease || a.To != b.To || a.ToLease != b.ToLease || len(a.Items) != len(b.Items) {
		return false
	}
	for i := range a.Items {
		if a.Items[i] != b.Items[i] {
			return false
		}
	}
	return true
}
