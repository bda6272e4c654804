// Package suggest finds the names close to a mistyped one, for messages
// that say "did you mean …?".
package suggest

import "strings"

// DidYouMean suggests the names close to typed (Close), as "did you mean
// services?" for "service"; "" if none is.
func DidYouMean(typed string, names []string) string { return Question(Close(typed, names)) }

// Question asks about the names close to a mistyped one, as "did you mean
// a or b?"; "" for none.
func Question(close []string) string {
	if len(close) == 0 {
		return ""
	}
	return "did you mean " + strings.Join(close, " or ") + "?"
}

// Close returns the names close to typed, in their order: those it starts,
// that start it, or that are one edit away (a byte added, removed, changed,
// or two swapped; two edits for a name of six characters or more). None if
// typed is shorter than two characters; one-letter names are never close.
func Close(typed string, names []string) []string {
	if len(typed) < 2 {
		return nil
	}
	maxEdits := 1
	if len(typed) >= 6 {
		maxEdits = 2
	}
	var close []string
	for _, n := range names {
		if len(n) < 2 {
			continue // a one-letter name is close to too much
		}
		if strings.HasPrefix(n, typed) || strings.HasPrefix(typed, n) || editDistance(typed, n) <= maxEdits {
			close = append(close, n)
		}
	}
	return close
}

// editDistance is the number of edits that turn a into b: a byte
// inserted, deleted or replaced, or two neighbours swapped (the optimal
// string alignment distance).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
