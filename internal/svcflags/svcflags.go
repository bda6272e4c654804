// Package svcflags holds the --tags and --metadata flags that describe a
// service on the command line (svcreg services create and update, the
// wrapper), parsed one way everywhere and checked against the registry's
// limits so that a mistake is a usage error before anything is sent.
package svcflags

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
)

// The registry's limits (docs/api.md, validation rules).
const (
	MaxTags        = 10
	MaxTagLength   = 55
	MaxMetadata    = 20
	MaxFieldLength = 255 // a metadata key or value
)

// List is a repeatable flag of comma-separated items (--tags a,b --tags c).
// It remembers whether it was given, so that --tags "" can mean "none".
type List struct {
	values []string
	given  bool
}

func (l *List) String() string { return strings.Join(l.values, ",") }

// Set adds one occurrence of the flag.
func (l *List) Set(v string) error {
	l.given = true
	l.values = append(l.values, v)
	return nil
}

// Given reports whether the flag was on the command line, even empty.
func (l *List) Given() bool { return l.given }

// items splits the values at commas, drops the blanks around each item
// and the empty items.
func (l *List) items() []string {
	var items []string
	for _, v := range l.values {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
	}
	return items
}

// Tags returns the tags given, in order; an empty, non-nil slice if none.
// A tag has 1..55 characters and no control character; a service carries
// at most 10.
func (l *List) Tags() ([]string, error) {
	tags := []string{}
	for _, t := range l.items() {
		switch {
		case length(t) > MaxTagLength:
			return nil, fmt.Errorf("--tags: tag %q is longer than %d characters", t, MaxTagLength)
		case strings.ContainsFunc(t, unicode.IsControl):
			return nil, fmt.Errorf("--tags: tag %q holds a control character", t)
		}
		tags = append(tags, t)
	}
	if len(tags) > MaxTags {
		return nil, fmt.Errorf("--tags: %d tags given; a service carries at most %d", len(tags), MaxTags)
	}
	return tags, nil
}

// Metadata returns the key=value items as a map; an empty, non-nil map if
// none. The key is trimmed; the value is everything after the first "="
// (items are split at commas, so neither holds one). Keys and values have
// 1..255 characters, a key is given once, and a service carries at most 20.
func (l *List) Metadata() (map[string]string, error) {
	md := map[string]string{}
	for _, item := range l.items() {
		key, value, ok := strings.Cut(item, "=")
		key = strings.TrimSpace(key)
		switch {
		case !ok:
			return nil, fmt.Errorf("--metadata: %q is not a key=value pair", item)
		case key == "" || length(key) > MaxFieldLength:
			return nil, fmt.Errorf("--metadata: in %q the key must have 1..%d characters", item, MaxFieldLength)
		case value == "" || length(value) > MaxFieldLength:
			return nil, fmt.Errorf("--metadata: in %q the value must have 1..%d characters", item, MaxFieldLength)
		}
		if _, dup := md[key]; dup {
			return nil, fmt.Errorf("--metadata: key %q is given twice", key)
		}
		md[key] = value
	}
	if len(md) > MaxMetadata {
		return nil, fmt.Errorf("--metadata: %d keys given; a service carries at most %d", len(md), MaxMetadata)
	}
	return md, nil
}

// length is the length the registry checks: UTF-16 code units.
func length(s string) int { return len(utf16.Encode([]rune(s))) }
