package suggest

import (
	"slices"
	"testing"
)

func TestClose(t *testing.T) {
	t.Parallel()
	names := []string{"services", "config", "events", "limits", "listen", "list", "n"}
	for _, tc := range []struct {
		typed string
		want  []string
	}{
		{"service", []string{"services"}},     // starts a name
		{"servicess", []string{"services"}},   // a name starts it
		{"lst", []string{"list"}},             // one byte missing
		{"listn", []string{"listen", "list"}}, // one byte missing, and a name starts it
		{"evnets", []string{"events"}},        // two neighbours swapped
		{"conifg", []string{"config"}},
		{"limtis", []string{"limits"}},
		{"cnfg", nil}, // two edits, too short a name for two
		{"nope", nil}, // starts with the one-letter "n"
		{"x", nil},    // too short
		{"zzzz", nil},
	} {
		if got := Close(tc.typed, names); !slices.Equal(got, tc.want) {
			t.Errorf("Close(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
	if got := DidYouMean("listn", names); got != "did you mean listen or list?" {
		t.Errorf("DidYouMean(listn) = %q", got)
	}
	if got := DidYouMean("zzzz", names); got != "" {
		t.Errorf("DidYouMean(zzzz) = %q, want none", got)
	}
}
