package timeuuid

import (
	"errors"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	now := time.UnixMilli(1369146000123)
	u := New(Ticks(now), 0x1234_5678_9abc_def0)
	if got := u.Time(); !got.Equal(now) {
		t.Fatalf("Time() = %v, want %v", got, now)
	}
	s := u.String()
	if len(s) != 36 || s[14] != '1' {
		t.Fatalf("String() = %q, not a v1 UUID", s)
	}
	if err := Check(s); err != nil {
		t.Fatalf("Check(%q) = %v", s, err)
	}
	back, err := Parse(s)
	if err != nil || back != u {
		t.Fatalf("Parse(%q) = %v, %v; want %v", s, back, err, u)
	}
	k := u.Key()
	if FromKey(k[:]) != u {
		t.Fatalf("FromKey(Key()) changed the UUID")
	}
}

func TestCheckMessages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"0", ErrInvalid},
		{"6ba7b810-9dad-11d1-80b4-00c04fd430c8", nil},
		{"6BA7B810-9DAD-11D1-80B4-00C04FD430C8", nil},
		{"6ba7b810-9dad-11d1-c0b4-00c04fd430c8", ErrVariant},
		{"6ba7b810-9dad-41d1-80b4-00c04fd430c8", ErrNotVersion1},
		{"6ba7b810x9dad-11d1-80b4-00c04fd430c8", ErrInvalid},
		{"6ba7b810-9dad-11d1-80b4-00c04fd430cg", ErrInvalid},
	} {
		if err := Check(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("Check(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestOrderIsTimeThenTail(t *testing.T) {
	// a's time_low is all ones and b's is zero, so a's text sorts after b's
	// although a is one tick earlier.
	base := Ticks(time.Now())&^(1<<32-1) | (1<<32 - 1)
	a := New(base, 5)
	b := New(base+1, 0)
	if a.String() < b.String() {
		t.Fatal("test UUIDs do not exercise text order")
	}
	if Compare(a, b) >= 0 {
		t.Fatalf("Compare(a, b) >= 0 for a earlier than b")
	}
	if Compare(New(base, 1), New(base, 2)) >= 0 {
		t.Fatalf("tail not compared")
	}
	ka, kb := a.Key(), b.Key()
	if string(ka[:]) >= string(kb[:]) {
		t.Fatalf("keys do not sort in UUID order")
	}
	if Compare(Low(time.UnixMilli(5)), High(time.UnixMilli(5))) >= 0 {
		t.Fatalf("Low >= High")
	}
	if Compare(a.Next(), New(base, 1<<62-1)) <= 0 {
		t.Fatalf("Next not after every UUID of the same tick")
	}
}
