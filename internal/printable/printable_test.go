package printable

import "testing"

func TestText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain\ttext\nand a line":      "plain\ttext\nand a line",
		`C:\dir`:                       `C:\dir`,
		"\u202edorp":                   `\u202edorp`,
		"a\u200bb \\ c":                `a\u200bb \\ c`,
		"\x1b]0;owned\a":               `\x1b]0;owned\a`,
		"blank\u3164\u2800":            `blank\u3164\u2800`,
		"plain text, tabs\tand\nlines": "plain text, tabs\tand\nlines",
		"a\x1b[2Jb\u009bc\u202ed\xffe": `a\x1b[2Jb\u009bc\u202ed\xffe`,
		// A backslash is kept where nothing is escaped, doubled where
		// something is: the text "\x1b" is not shown as ESC would be.
		`C:\dir\x1b`:    `C:\dir\x1b`,
		"\\x1b\x1b":     `\\x1b\x1b`,
		"bad \xff byte": `bad \xff byte`,
		"Grüße, مرحبا, 😀, می\u200cخواهم": `Grüße, مرحبا, 😀, می\u200cخواهم`,
		// Marks that show as nothing: "prod" and these read alike.
		"prod\u034f":           `prod\u034f`,
		"prod\ufe00":           `prod\ufe00`,
		"prod\U000e0100":       `prod\U000e0100`,
		"prod\u17b4\u180b":     `prod\u17b4\u180b`,
		"\ufe0fprod":           `\ufe0fprod`,
		"1\ufe0f\u20e3 keycap": "1\\ufe0f\u20e3 keycap",
		// A variation selector that picks an emoji's or an ideograph's
		// form is text.
		"❤\ufe0f 漢\U000e0100 ☀\ufe0e": "❤\ufe0f 漢\U000e0100 ☀\ufe0e",
		// Any other is not: after an escaped character, a selector of
		// another kind, or a replacement character.
		"\u2800\ufe0f":     `\u2800\ufe0f`,
		"prod\xff\ufe0f":   `prod\xff\ufe0f`,
		"\U0001f600\ufe00": "\U0001f600\\ufe00",
		"漢\ufe0f":          `漢\ufe0f`,
		"\ufffd\ufe0f":     "\ufffd\\ufe0f",
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q; want %q", in, got, want)
		}
	}
}

// A line is shown the same whatever the other lines hold: one hidden
// character in one file of a diff does not double the backslashes of
// every other line; a CRLF line ending is kept.
func TestLines(t *testing.T) {
	t.Parallel()
	in := "location ~ \\.php$ {\r\n+server web-1 \u202e08:1.0.0.01;\n-old \\ line\n"
	want := "location ~ \\.php$ {\r\n+server web-1 \\u202e08:1.0.0.01;\n-old \\ line\n"
	if got := Lines(in); got != want {
		t.Errorf("Lines(%q) = %q; want %q", in, got, want)
	}
	if got := Lines("as it is\n"); got != "as it is\n" {
		t.Errorf("Lines of a plain text: %q", got)
	}
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},  // é is two bytes: not split
		{"a€b", 3, "a"}, // € is three
		{"\x80\x80\x80\x80\x80\x80", 5, "\x80\x80"}, // not UTF-8: at most three short
	} {
		if got := Prefix(tc.s, tc.n); got != tc.want {
			t.Errorf("Prefix(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
