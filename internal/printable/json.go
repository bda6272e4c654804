package printable

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// JSON is JSON text with what a terminal would act on, or a JSON reader
// refuse, escaped: a character that is not printable (a C1 control, a
// bidi override) or that shows as nothing or as a blank (Shows: U+034F, a
// variation selector after ASCII, a Hangul filler) as \uXXXX, and a byte
// that is not UTF-8 (from a registry's raw event payload) as \ufffd, as
// Go writes one in a string. Outside its strings JSON text is ASCII, so
// only strings change, and they say the same. b itself if nothing needs
// escaping.
func JSON(b []byte) []byte {
	shows := func(r rune) bool { return r != '\t' && Shows(r) } // Shows takes newlines
	if AllShown(string(b), shows) {
		return b
	}
	return []byte(EscapeRunes(string(b), shows, func(out *strings.Builder, r rune, raw string) {
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

// IndentedJSON is v as indented JSON and a newline, escaped as JSON
// escapes it; escapeHTML escapes <, > and & too (encoding/json's default).
func IndentedJSON(v any, escapeHTML bool) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return JSON(b.Bytes()), nil
}
