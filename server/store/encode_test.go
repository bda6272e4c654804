package store

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
)

// A record or an event holds '<', '>' and '&' as they are, not as six
// bytes each (\u003c): a service whose metadata is all '<' would otherwise
// take six times its size in the store, and in etcd's history. It decodes
// the same.
func TestRecordsAndEventsKeepHTMLCharacters(t *testing.T) {
	t.Parallel()
	md := map[string]string{"a": strings.Repeat("<", 255), "b": "x&y>z", "c": "line\u2028sep"}
	ev := ServiceEvent(timeuuid.UUID{}, time.Unix(0, 0), registry.ServiceJoin, ServiceRecord{ID: "svc", Metadata: md, HeartbeatTimeout: 30})
	rec, err := MarshalJSON(ServiceRecord{ID: "svc", Metadata: md, HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	for what, b := range map[string][]byte{"event": ev.JSON, "record": rec} {
		if bytes.Contains(b, []byte(`\u003c`)) || bytes.Contains(b, []byte(`\u0026`)) || !bytes.Contains(b, []byte("x&y>z")) {
			t.Errorf("the %s escapes HTML characters: %s", what, b)
		}
		if len(b) > 600 { // escaped, the 255 "<" alone take 1530
			t.Errorf("the %s takes %d bytes for 263 bytes of metadata", what, len(b))
		}
		if !bytes.Contains(b, []byte(`line\u2028sep`)) {
			t.Errorf("the %s holds U+2028 unescaped: %s", what, b)
		}
		if !json.Valid(b) {
			t.Errorf("the %s is not JSON: %s", what, b)
		}
	}
	var back ServiceRecord
	if err := json.Unmarshal(rec, &back); err != nil || back.Metadata["a"] != md["a"] || back.Metadata["b"] != md["b"] {
		t.Errorf("the record decodes as %+v (%v)", back, err)
	}
}
