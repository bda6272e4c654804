// Package printable writes text that may hold registry data so that what
// a reader sees is what it holds: a character that is not printable (an
// escape sequence, a C1 control, a bidirectional override that would show
// "dorp" as "prod", a zero-width character) is written as an escape. The
// command line's output and the renderer's status page use it.
package printable

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text is s with its lines and tabs kept, any other character that is not
// printable written as an escape (\u202e, \x1b; a byte that is not UTF-8
// as \xff), and then a backslash doubled, so that an escape shown is never
// the value's own text. A text with nothing to escape is returned as it
// is.
func Text(s string) string {
	if AllShown(s, Shows) {
		return s
	}
	return Escaped(s)
}

// Lines is Text line by line, for a text of many lines from many sources
// (a diff of several files): a line's escapes, and whether its
// backslashes are doubled, do not depend on other lines. A carriage
// return that ends a line is kept.
func Lines(s string) string {
	if AllShown(s, Shows) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for line := range strings.SplitAfterSeq(s, "\n") {
		end := len(line) - len(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"))
		b.WriteString(Text(line[:len(line)-end]))
		b.WriteString(line[len(line)-end:])
	}
	return b.String()
}

// Shows reports whether Text writes r as it is: a printable character,
// a newline or a tab, but not one of the letters and symbols that show as
// nothing (blanks).
func Shows(r rune) bool {
	return r == '\n' || r == '\t' || unicode.IsPrint(r) && !IsBlank(r)
}

// ShowsInline reports whether r is written as it is within a line (a
// table's cell): Shows, but not a newline or a tab.
func ShowsInline(r rune) bool { return r != '\n' && r != '\t' && Shows(r) }

// IsBlank reports whether r is a letter or symbol that shows as blank
// space though it is not a space: the Hangul fillers and the blank
// braille pattern, with which a name can look empty or like another.
func IsBlank(r rune) bool {
	switch r {
	case 0x115f, 0x1160, 0x3164, 0xffa0, 0x2800:
		return true
	}
	return false
}

// Escaped is Text for a text that has something to escape, or that is
// part of an output whose earlier part had.
func Escaped(s string) string {
	shows := func(r rune) bool { return r != '\\' && Shows(r) }
	return EscapeRunes(s, shows, func(out *strings.Builder, r rune, raw string) {
		switch {
		case r == utf8.RuneError && len(raw) == 1:
			fmt.Fprintf(out, `\x%02x`, raw[0])
		case r == '\\':
			out.WriteString(`\\`)
		default:
			q := strconv.QuoteRuneToASCII(r)
			out.WriteString(q[1 : len(q)-1])
		}
	})
}

// AllShown reports whether s is UTF-8 whose every rune shows says is
// written as it is: nothing for EscapeRunes to do.
func AllShown(s string, shows func(rune) bool) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !shows(r) }) < 0
}

// EscapeRunes is s with every rune that shows does not take, and every
// byte that is not UTF-8 (r utf8.RuneError, raw that byte), written by
// esc; the rest as it is.
func EscapeRunes(s string, shows func(rune) bool, esc func(out *strings.Builder, r rune, raw string)) string {
	var out strings.Builder
	for i, n := 0, 0; i < len(s); i += n {
		var r rune
		r, n = utf8.DecodeRuneInString(s[i:])
		if (r != utf8.RuneError || n > 1) && shows(r) {
			out.WriteString(s[i : i+n])
		} else {
			esc(&out, r, s[i:i+n])
		}
	}
	return out.String()
}
