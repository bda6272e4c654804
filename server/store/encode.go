package store

import (
	"bytes"
	"encoding/json"
)

// MarshalJSON is json.Marshal without its HTML escaping: a record or an
// event as a store keeps it. json.Marshal writes each '<', '>' and '&' as
// six bytes (\u003c), so that a service whose metadata is all '<' took six
// times its size on disk, in an etcd transaction and in every event and
// list answer that holds it. The answers are JSON, served as such, and
// decode the same either way; U+2028 and U+2029 are still escaped.
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
