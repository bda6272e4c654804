package main

import (
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/svcreg/svcreg/internal/printable"
)

// How the API commands print: tables for people (text/tabwriter), and
// with --output json the API's own shapes for scripts.

// writeJSON writes v as indented JSON and a newline, printable.JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := printable.IndentedJSON(v, false)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
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
// (printable.Inline), so that registry data cannot drive the terminal.
// The value "-", and one that starts with a double quote, are quoted too,
// so that no value shows as another: "-" is not an empty value, and the
// six characters "a\tb" (quotes and backslash included) are not a, a tab
// and b quoted.
func cell(s string) string {
	switch {
	case s == "":
		return "-"
	case s == "-" || s[0] == '"':
		return termQuote(s)
	}
	return printable.Inline(s)
}

// listCell is a table cell for a list joinTags or joinMetadata wrote,
// whose items are quoted already: "-" if it is empty.
func listCell(joined string) string {
	if joined == "" {
		return "-"
	}
	return joined
}

// joinTags writes tags as --tags takes them: a,b. A tag that holds a
// comma, an equals sign, a space or a quote, or that printable.Inline would quote,
// is quoted (Go syntax), so that two lists never print alike: "a,b" is one
// tag, a,b two.
func joinTags(tags []string) string {
	var b strings.Builder
	for i, t := range tags {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(listItem(t))
	}
	return b.String()
}

// joinMetadata writes metadata as --metadata takes it, sorted by key:
// k=v,k2=v2; keys and values quoted as joinTags quotes tags (an empty one
// as "").
func joinMetadata(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(listItem(k) + "=" + listItem(m[k]))
	}
	return b.String()
}

// listItem is an item of a list joinTags or joinMetadata writes: quoted
// if it holds what separates items or could pass for it, or is "-" (a
// table's empty cell).
func listItem(s string) string {
	if s == "" || s == "-" || strings.ContainsAny(s, ",= \"\\") {
		return termQuote(s)
	}
	return printable.Inline(s)
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
