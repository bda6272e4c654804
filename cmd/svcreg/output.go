package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/svcreg/svcreg/internal/printable"
)

// How the API commands print: tables for people (text/tabwriter), and
// with --output json the API's own shapes for scripts.

// writeJSON writes v as indented JSON and a newline, jsonSafe.
func writeJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(jsonSafe(b.Bytes()))
	return err
}

// jsonSafe is JSON text with what a terminal would act on, or a JSON
// reader refuse, escaped: a character that is not printable (a C1
// control, a bidi override) or that shows as nothing or as a blank
// (printable.Shows: U+034F, a variation selector after ASCII, a Hangul
// filler) as \uXXXX, and a byte that is not UTF-8 (from a registry's raw
// event payload) as \ufffd, as Go writes one in a string. Outside its
// strings JSON text is ASCII, so only strings change, and they say the
// same.
func jsonSafe(b []byte) []byte {
	shows := func(r rune) bool { return r != '\t' && printable.Shows(r) } // Shows takes newlines
	if printable.AllShown(string(b), shows) {
		return b
	}
	return []byte(printable.EscapeRunes(string(b), shows, func(out *strings.Builder, r rune, raw string) {
		switch {
		case r == utf8.RuneError && len(raw) == 1:
			out.WriteString(`\ufffd`)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(out, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(out, `\u%04x`, r)
		}
	}))
}

// newTable returns a tabwriter for a table whose cells are separated by
// tabs; Flush it at the end.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes one table row.
func row(w io.Writer, cells ...string) {
	io.WriteString(w, strings.Join(cells, "\t")+"\n")
}

// cell makes s safe for a table cell: empty becomes "-", and a value with
// tabs, newlines, other control characters, characters that do not
// print (bidirectional overrides) or bytes that are not UTF-8 is quoted
// (termSafe), so that registry data cannot drive the terminal.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return termSafe(s)
}

// joinTags writes tags as --tags takes them: a,b.
func joinTags(tags []string) string { return strings.Join(tags, ",") }

// joinMetadata writes metadata as --metadata takes it, sorted by key:
// k=v,k2=v2.
func joinMetadata(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

// formatTime shows a time in the local zone with its offset; "-" for the
// zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02T15:04:05Z07:00")
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTTY(f.Fd())
}

// termWriter writes through termText, to a terminal: for output that
// registry text may have written. From the first write it has to escape
// on, it escapes every write (backslashes doubled), and it calls note once
// before it, to say so, so that a backslash doubled (or text that looks
// like an escape) is never taken for what was rendered.
type termWriter struct {
	w        io.Writer
	note     func()
	escaping bool
}

func (t *termWriter) Write(p []byte) (int, error) {
	shown := printable.Text(string(p))
	if shown != string(p) && !t.escaping {
		t.escaping = true
		t.note()
	} else if t.escaping {
		shown = printable.Escaped(string(p))
	}
	if _, err := io.WriteString(t.w, shown); err != nil {
		return 0, err
	}
	return len(p), nil
}
