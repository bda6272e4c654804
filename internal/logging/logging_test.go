package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
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

// An unauthenticated client can make a server write an ErrorLog line per
// connection (a TLS handshake that fails): lines past a burst are not
// written, one a second is, and the next one written says how many were
// not. A handler's panic always is.
func TestErrorLogLinesLimited(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimitedLines(&buf, func() time.Time { return now })
	for range 10 * errorLineBurst {
		l.Write([]byte("http: TLS handshake error from 10.0.0.1:1: EOF\n"))
	}
	if n := strings.Count(buf.String(), "TLS handshake error"); n != errorLineBurst {
		t.Errorf("%d lines of %d written at once; want the burst, %d", n, 10*errorLineBurst, errorLineBurst)
	}
	buf.Reset()
	now = now.Add(time.Second)
	l.Write([]byte("http: TLS handshake error from 10.0.0.1:2: EOF\n"))
	l.Write([]byte("http: TLS handshake error from 10.0.0.1:3: EOF\n"))
	want := fmt.Sprintf("http: %d lines of this server's error log not written since the last", 9*errorLineBurst)
	if got := buf.String(); !strings.HasPrefix(got, want) || !strings.Contains(got, "10.0.0.1:2") || strings.Contains(got, "10.0.0.1:3") {
		t.Errorf("a second on: %q; want %q, then the one line", got, want)
	}
	l.Write([]byte("http: panic serving 10.0.0.1:4: boom\n"))
	if !strings.Contains(buf.String(), "panic serving") {
		t.Error("a panic was not written")
	}
}

// The JSON handler escapes only control characters below U+0020: a C1
// control (a terminal's CSI) or a bidirectional override that a request
// put in a string or an error is written escaped, as the text handler
// quotes it.
func TestJSONLogEscapesWhatDoesNotPrint(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := New(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	var typedNil *nilError
	log.Info("request \u202eevil", "uri", "/services/\u202eprod\u009b31m", "err", errors.New("bad \u009b2J"), "plain", "Grüße", "nil", error(typedNil))
	out := buf.String()
	if strings.ContainsAny(out, "\u202e\u009b") {
		t.Errorf("the record holds a character that does not print as it is: %q", out)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != `request \u202eevil` || rec["uri"] != `/services/\u202eprod\u009b31m` || rec["err"] != `bad \u009b2J` || rec["plain"] != "Grüße" {
		t.Errorf("record %v", rec)
	}

	// A list or a map keeps its shape and its values; in the record's
	// text, what does not print is a JSON escape.
	buf.Reset()
	tags := []string{"a\u009b31m", "<b>", "\u202ec"}
	meta := map[string]string{"k\u202e": "v\u009b"}
	log.Info("registering", "tags", tags, "metadata", meta, "ok", []int{1, 2})
	if strings.ContainsAny(buf.String(), "\u202e\u009b") {
		t.Errorf("the record holds a character that does not print as it is: %q", buf.String())
	}
	var got struct {
		Tags     []string
		Metadata map[string]string
		OK       []int
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if !slices.Equal(got.Tags, tags) || !maps.Equal(got.Metadata, meta) || !slices.Equal(got.OK, []int{1, 2}) {
		t.Errorf("record %q decodes to %+v", buf.String(), got)
	}
	if !strings.Contains(buf.String(), `"<b>"`) || !strings.Contains(buf.String(), `"a\u009b31m"`) {
		t.Errorf("record %q: want <b> as it is and U+009B as \\u009b", buf.String())
	}
}

// nilError's Error panics on a nil pointer, as many errors' do.
type nilError struct{ msg string }

func (e *nilError) Error() string { return e.msg }

// The text handler quotes a string that holds a character unicode.IsPrint
// refuses, but writes as it is one that shows as nothing or as a blank
// though it is printable to Go (a Hangul filler, a variation selector
// after ASCII, the combining grapheme joiner): a service "web\u3164"
// would read as "web". Those are escaped as the JSON handler escapes
// them; other text is written as before.
func TestTextLogEscapesWhatShowsAsNothing(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := New(&buf, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("refused \u3164", "service", "web\u3164", "marker", "prod\ufe00", "x", "a\u034fb c", "err", errors.New("no api\u3164"), "tags", []string{"t\u3164"}, "plain", "Grüße \u202e")
	out := buf.String()
	if strings.ContainsAny(out, "\u3164\ufe00\u034f\u202e") {
		t.Errorf("the record holds a character that does not show as it is: %q", out)
	}
	for _, want := range []string{`service=web\u3164`, `marker=prod\ufe00`, `x="a\\u034fb c"`, `err="no api\\u3164"`, `tags=[t\u3164]`, `plain="Grüße \u202e"`} {
		if !strings.Contains(out, want) {
			t.Errorf("record %q: want %s", out, want)
		}
	}
}

// A slice of bytes, which the text handler writes as a quoted string, has
// what shows as nothing escaped too.
func TestTextLogEscapesBytesThatShowAsNothing(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := New(&buf, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	type named []byte
	log.Info("m", "b", []byte("web\u3164"), "n", named("prod\ufe00"), "plain", []byte("a b"))
	out := buf.String()
	if strings.ContainsAny(out, "\u3164\ufe00") {
		t.Errorf("the record holds a character that does not show as it is: %q", out)
	}
	for _, want := range []string{`b=web\u3164`, `n=prod\ufe00`, `plain="a b"`} {
		if !strings.Contains(out, want) {
			t.Errorf("record %q: want %s", out, want)
		}
	}
}

// DEL (U+007F) shows as nothing in a terminal, and the text handler
// writes a string holding it as it is, unquoted (slog takes it for safe,
// as JSON does): a service "web\x7f" would read as "web". It is escaped;
// a string the handler quotes anyway is left to the handler's escapes.
func TestTextLogEscapesDEL(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := New(&buf, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("refused \x7f", "service", "web\x7f", "err", errors.New("no\x7f"), "tags", []string{"t\x7f"}, "b", []byte("b\x7f"))
	out := buf.String()
	if strings.Contains(out, "\x7f") {
		t.Errorf("the record holds a DEL as it is: %q", out)
	}
	for _, want := range []string{`msg="refused \x7f"`, `service=web\x7f`, `err=no\x7f`, `tags=[t\x7f]`} {
		if !strings.Contains(out, want) {
			t.Errorf("record %q: want %s", out, want)
		}
	}
}

// An empty attribute, as a caller adds when it has nothing to say (the
// count of lines left out, when none was), is left out of the line, as
// slog's own handlers leave it out, in both formats.
func TestEmptyAttrLeftOut(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log, err := New(&buf, format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Warn("store unavailable", "txn", "x", slog.Attr{})
		if out := buf.String(); strings.Contains(out, "nil") || strings.Contains(out, `""`) {
			t.Errorf("%s record %q holds the empty attribute", format, out)
		}
	}
}
