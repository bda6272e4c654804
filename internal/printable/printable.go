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
	put := func(s string) { b.WriteString(s) }
	WriteLines(s, put, put)
	return b.String()
}

// WriteLines writes Lines(s) in pieces: the text as it is through text,
// and each escape (a doubled backslash too) through esc, so that a page
// can mark the escapes as such.
func WriteLines(s string, text, esc func(string)) {
	if AllShown(s, Shows) {
		text(s)
		return
	}
	for line := range strings.SplitAfterSeq(s, "\n") {
		end := len(line) - len(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"))
		if body := line[:len(line)-end]; AllShown(body, Shows) {
			text(body)
		} else {
			writeEscaped(body, text, esc)
		}
		if end > 0 {
			text(line[len(line)-end:])
		}
	}
}

// Shows reports whether Text writes r as it is: a printable character,
// a newline or a tab, but not one that makes text read as other text
// (Hides; a variation selector shows only after a symbol or an
// ideograph, which AllShown and EscapeRunes see to).
func Shows(r rune) bool {
	return r == '\n' || r == '\t' || unicode.IsPrint(r) && (!Hides(r) || unicode.Is(unicode.Variation_Selector, r))
}

// Hides reports whether r makes text read as other text: a
// bidirectional control (a right-to-left override shows "08:1.0.0.01" as
// "10.0.0.1:80"), a format character that shows as nothing (a zero-width
// space, an invisible operator such as U+2061, a soft hyphen, a tag
// character), a variation selector, another default-ignorable character
// (the combining grapheme joiner, U+034F), or a letter that shows as
// blank (IsBlank). The zero-width joiner and non-joiner, which some
// scripts' spelling and emoji need, are not counted; the presentation
// selectors after a symbol other than ASCII (an emoji) and the ideographic
// variation selectors after an ideograph pick its form (VariationTaken).
func Hides(r rune) bool {
	if r < 0x80 || r == 0x200c || r == 0x200d {
		return false
	}
	return unicode.In(r, unicode.Bidi_Control, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point) ||
		IsBlank(r)
}

// VariationTaken reports whether r is a variation selector that picks the
// form of prev as text needs it to: the text or emoji presentation
// selector (U+FE0E, U+FE0F) after a symbol other than ASCII (an emoji), or
// an ideographic variation selector (U+E0100 on) after an ideograph. Any
// other (after an ASCII letter or digit, "prod" and "prod\ufe00" read
// alike; after a character written as an escape, prev is 0) hides.
func VariationTaken(prev, r rune) bool {
	switch {
	case r == 0xfe0e || r == 0xfe0f:
		return prev >= 0x80 && prev != utf8.RuneError && unicode.Is(unicode.S, prev)
	case r >= 0xe0100 && r <= 0xe01ef:
		return unicode.Is(unicode.Ideographic, prev)
	}
	return false
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
	var b strings.Builder
	put := func(s string) { b.WriteString(s) }
	writeEscaped(s, put, put)
	return b.String()
}

// writeEscaped writes Escaped(s) in pieces, as WriteLines does.
func writeEscaped(s string, text, esc func(string)) {
	shows := func(r rune) bool { return r != '\\' && Shows(r) }
	walk(s, shows, text, func(r rune, raw string) {
		switch {
		case r == utf8.RuneError && len(raw) == 1:
			esc(fmt.Sprintf(`\x%02x`, raw[0]))
		case r == '\\':
			esc(`\\`)
		default:
			q := strconv.QuoteRuneToASCII(r)
			esc(q[1 : len(q)-1])
		}
	})
}

// Inline is s as one line of text may show it: as it is if every rune of
// it shows within a line (ShowsInline), else Go-quoted with every rune but
// printable ASCII escaped (an escape sequence, a newline, a bidi override,
// a letter that shows as blank, invalid UTF-8).
func Inline(s string) string {
	if !AllShown(s, ShowsInline) {
		return strconv.QuoteToASCII(s)
	}
	return s
}

// AllShown reports whether s is UTF-8 whose every rune shows says is
// written as it is: nothing for EscapeRunes to do.
func AllShown(s string, shows func(rune) bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	prev := rune(0)
	for _, r := range s {
		if !taken(shows, prev, r) {
			return false
		}
		prev = r
	}
	return true
}

// taken reports whether r, after prev, is written as it is: shows takes
// it, and if it is a variation selector, it picks prev's form
// (VariationTaken).
func taken(shows func(rune) bool, prev, r rune) bool {
	return shows(r) && (r < 0x180b || !unicode.Is(unicode.Variation_Selector, r) || VariationTaken(prev, r))
}

// EscapeRunes is s with every rune that shows does not take (and every
// variation selector that does not pick its previous rune's form:
// VariationTaken), and every byte that is not UTF-8 (r utf8.RuneError,
// raw that byte), written by esc; the rest as it is.
func EscapeRunes(s string, shows func(rune) bool, esc func(out *strings.Builder, r rune, raw string)) string {
	var out strings.Builder
	walk(s, shows, func(s string) { out.WriteString(s) }, func(r rune, raw string) { esc(&out, r, raw) })
	return out.String()
}

// walk passes the runs of s that shows takes (as EscapeRunes) to text, and
// each rune it does not, or byte that is not UTF-8, to esc.
func walk(s string, shows func(rune) bool, text func(string), esc func(r rune, raw string)) {
	prev, start := rune(0), 0
	for i, n := 0, 0; i < len(s); i += n {
		var r rune
		r, n = utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !taken(shows, prev, r) {
			if start < i {
				text(s[start:i])
			}
			esc(r, s[i:i+n])
			start = i + n
			r = 0 // a selector after an escape picks nothing's form
		}
		prev = r
	}
	if start < len(s) {
		text(s[start:])
	}
}

// Prefix is s cut to at most n bytes at the start of a character, so
// that a character is not split (a string that is not UTF-8 is cut at
// most utf8.UTFMax-1 bytes short of n).
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > n-(utf8.UTFMax-1) && cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
