package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := New(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("one JSON record expected: %v\n%s", err, buf.Bytes())
	}
	if rec["msg"] != "kept" || rec["k"] != "v" {
		t.Errorf("record %v, want msg=kept k=v", rec)
	}

	buf.Reset()
	if log, err = New(&buf, "text", "debug"); err != nil {
		t.Fatal(err)
	}
	log.Debug("hello")
	if !strings.Contains(buf.String(), "level=DEBUG msg=hello") {
		t.Errorf("text record %q, want level=DEBUG msg=hello", buf.String())
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ format, level, want string }{
		{"xml", "info", `--log-format "xml": use text or json`},
		{"text", "loud", `--log-level "loud": use debug, info, warn or error`},
	} {
		if _, err := New(io.Discard, tt.format, tt.level); err == nil || err.Error() != tt.want {
			t.Errorf("New(%q, %q) = %v, want %q", tt.format, tt.level, err, tt.want)
		}
	}
}
