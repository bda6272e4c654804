// Package logging builds the slog logger the commands configure with
// --log-format and --log-level.
package logging

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/svcreg/svcreg/internal/printable"
)

// New returns a logger writing to w in format ("text" or "json") from
// level ("debug", "info", "warn" or "error") up. Its errors name the flag
// at fault and the values it takes.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		opts.ReplaceAttr = shownInText
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		opts.ReplaceAttr = shownInJSON
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// shownInJSON escapes, in a string or an error's text, the characters
// that do not print (printable.Text): the JSON handler escapes only those
// below U+0020 and U+2028/2029, and a C1 control (U+009B, a terminal's
// CSI) or a bidirectional override from a request would reach whoever
// reads the log in a terminal as it is. The text handler quotes such
// strings itself. Any other value (a list, a map) is written as the
// handler would, with such characters in its strings as JSON escapes
// (printable.JSON), so that it decodes to the same value.
func shownInJSON(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(printable.Text(a.Value.String()))
	case slog.KindAny:
		// Replaced only if it needs escapes: an error that marshals
		// itself to JSON is left to do so.
		v := a.Value.Any()
		if err, ok := v.(error); ok {
			if s, ok := errorText(err); ok && !printable.AllShown(s, printable.Shows) {
				a.Value = slog.StringValue(printable.Escaped(s))
			}
			break
		}
		if raw, ok := handlersJSON(v); ok {
			if safe := printable.JSON(raw); !bytes.Equal(safe, raw) {
				a.Value = slog.AnyValue(json.RawMessage(safe))
			}
		}
	}
	return a
}

// shownInText escapes, in a string, an error's text or another value's
// (printable.Escaped), the characters the text handler writes as they are
// though they do not show as themselves: it quotes a string that holds a
// character unicode.IsPrint refuses, DEL excepted (textQuotes), and Go
// takes a Hangul filler, a variation selector or the combining grapheme
// joiner for printable, so that a service "web\u3164" would read as
// "web". Any other value is left to the handler.
func shownInText(_ []string, a slog.Attr) slog.Attr {
	var s string
	switch a.Value.Kind() {
	case slog.KindString:
		s = a.Value.String()
	case slog.KindAny:
		v := a.Value.Any()
		if v == nil {
			// The handler writes <nil> itself, and leaves out an empty
			// attribute, which a string would not be.
			return a
		}
		if err, ok := v.(error); ok {
			text, ok := errorText(err)
			if !ok {
				return a
			}
			s = text
		} else if _, ok := v.(encoding.TextMarshaler); ok {
			return a
		} else if b, ok := byteSlice(v); ok {
			s = string(b) // the handler quotes it, as a string that needs it
		} else {
			// As the handler writes it; given as a string, it is not
			// formatted twice.
			s = fmt.Sprintf("%+v", v)
			a.Value = slog.StringValue(s)
		}
	default:
		return a
	}
	if !printable.AllShown(s, printable.Shows) && (!textQuotes(s) || !printable.AllShown(strconv.Quote(s), printable.Shows)) {
		a.Value = slog.StringValue(printable.Escaped(s))
	}
	return a
}

// textQuotes reports whether the text handler quotes s (strconv.Quote), as
// log/slog decides it: for a character below U+0020, a space, '=' or '"',
// or one that is not UTF-8, a space or not printable to Go. DEL (U+007F)
// is not among them: slog writes it as it is.
func textQuotes(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r < utf8.RuneSelf {
			if r <= ' ' || r == '=' || r == '"' {
				return true
			}
			continue
		}
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// byteSlice is v's bytes if it is a slice of bytes (of a named type too),
// which the text handler writes as a Go-quoted string.
func byteSlice(v any) ([]byte, bool) {
	if b, ok := v.([]byte); ok {
		return b, true
	}
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		return reflect.ValueOf(v).Bytes(), true
	}
	return nil, false
}

// handlersJSON is v as slog's JSON handler writes it (without HTML
// escapes), and false if it cannot be encoded (the handler then writes
// the error).
func handlersJSON(v any) ([]byte, bool) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, false
	}
	return bytes.TrimRight(b.Bytes(), "\n"), true
}

// errorText is err's text, and false if Error panics (a typed nil): the
// handler then writes it as it does any value whose method panics.
func errorText(err error) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	return err.Error(), true
}

// MaxErrorLine bounds the message of a line an http.Server writes to its
// ErrorLog (ErrorLog): some quote what a client sent, and need no
// credentials to be written (a TLS handshake error quotes the client's
// protocol list, up to 64 KB of it, four bytes a byte).
const MaxErrorLine = 512

// ErrorLog is an http.Server's ErrorLog: each line it writes is a record
// of h at level warn, its message cut to MaxErrorLine bytes (at a whole
// rune) and then saying how long it was; of a handler's panic, only the
// first line is cut, and the stack kept.
//
// At most errorLineBurst lines are logged at once, then one a second (a
// handler's panic always): an unauthenticated client can make a server
// write one (a TLS handshake that fails) per connection, thousands a
// second. The next line logged says how many were not.
func ErrorLog(h slog.Handler) *log.Logger {
	return log.New(newLimitedLines(cutLines{slog.NewLogLogger(h, slog.LevelWarn).Writer()}, time.Now), "", 0)
}

// errorLineBurst and errorLinesPerSecond bound the lines of an ErrorLog.
const (
	errorLineBurst      = 20
	errorLinesPerSecond = 1
)

// limitedLines passes on at most errorLineBurst lines at once and
// errorLinesPerSecond after that, and a handler's panic always.
type limitedLines struct {
	w   io.Writer
	now func() time.Time
	lim *rate.Limiter

	mu      sync.Mutex
	dropped int
}

func newLimitedLines(w io.Writer, now func() time.Time) *limitedLines {
	return &limitedLines{w: w, now: now, lim: rate.NewLimiter(errorLinesPerSecond, errorLineBurst)}
}

func (l *limitedLines) Write(p []byte) (int, error) {
	panicked := bytes.HasPrefix(p, []byte("http: panic serving "))
	l.mu.Lock()
	if !l.lim.AllowN(l.now(), 1) && !panicked {
		l.dropped++
		l.mu.Unlock()
		return len(p), nil
	}
	dropped := l.dropped
	l.dropped = 0
	l.mu.Unlock()
	if dropped > 0 {
		fmt.Fprintf(l.w, "http: %d lines of this server's error log not written since the last (at most %d a second are, after %d)\n", dropped, errorLinesPerSecond, errorLineBurst)
	}
	return l.w.Write(p)
}

// cutLines cuts each line written to it to MaxErrorLine bytes.
type cutLines struct{ w io.Writer }

func (c cutLines) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	stack := ""
	if strings.HasPrefix(line, "http: panic serving ") {
		// A handler's panic: its stack (at most 64 KiB, the server's own)
		// says where the server failed; only the first line is cut.
		if i := strings.IndexByte(line, '\n'); i >= 0 {
			line, stack = line[:i], line[i:]
		}
	}
	if len(line) <= MaxErrorLine {
		return c.w.Write(p)
	}
	if _, err := fmt.Fprintf(c.w, "%s… (cut: %d bytes)%s\n", printable.Prefix(line, MaxErrorLine), len(line), stack); err != nil {
		return 0, err
	}
	return len(p), nil
}
