package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/svcreg/svcreg/internal/testserver"
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

// A line an http.Server writes to its ErrorLog is one record, its message
// cut at a whole rune.
func TestErrorLogCutsLongLines(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := ErrorLog(slog.NewJSONHandler(&buf, nil))
	l.Printf("http: TLS handshake error: %s", strings.Repeat("é", 40000))
	l.Printf("short")
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %v\n%.300s", err, line)
		}
		recs = append(recs, rec)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2:\n%.1000s", len(recs), buf.String())
	}
	msg, _ := recs[0]["msg"].(string)
	if len(msg) > MaxErrorLine+40 || !strings.HasPrefix(msg, "http: TLS handshake error: éé") ||
		!strings.HasSuffix(msg, "… (cut: 80027 bytes)") || !utf8.ValidString(msg) || recs[0]["level"] != "WARN" {
		t.Errorf("long line logged as %v (%d bytes)", recs[0], len(msg))
	}
	if recs[1]["msg"] != "short" {
		t.Errorf("short line logged as %v", recs[1])
	}
}

// An http.Server logs a handler's panic with its goroutine's stack, to
// its ErrorLog: the stack is what says where the server failed, and must
// come through whole (it is the server's own, not what a client sent).
func TestErrorLogKeepsPanicStacks(t *testing.T) {
	t.Parallel()
	var buf testserver.Buffer
	srv := httptest.NewUnstartedServer(http.HandlerFunc(servePanicking))
	srv.Config.ErrorLog = ErrorLog(slog.NewTextHandler(&buf, nil))
	srv.Start()
	defer srv.Close()
	if resp, err := http.Get(srv.URL); err == nil {
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "http: panic serving") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := buf.String()
	if !strings.Contains(got, "http: panic serving") {
		t.Fatalf("no panic logged: %q", got)
	}
	if !strings.Contains(got, "created by net/http.(*Server).Serve") {
		t.Errorf("the logged panic's stack is cut short (it does not end at net/http.(*Server).Serve), %d bytes:\n%s", len(got), got)
	}
}

func servePanicking(w http.ResponseWriter, r *http.Request) { lookUp(r, nil) }

//go:noinline
func lookUp(r *http.Request, m map[string]int) { m[r.URL.Path]++ }
