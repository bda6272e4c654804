package store

import (
	"encoding/json"
	"testing"
	"time"
)

// What a revocation covers, part by part, for tokens that record their
// issue time and print, and for tokens of earlier releases that do not.
func TestRevocationCovers(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := Revocation{Tenants: map[string]time.Time{"1": t0}, Retired: map[string]time.Time{"old": t0}, Printless: t0}
	issued := func(d time.Duration, tenant, key string) TokenInfo {
		return TokenInfo{Tenant: tenant, KeyPrint: key, Issued: t0.Add(d), Expires: t0.Add(d + 24*time.Hour)}
	}
	for _, tc := range []struct {
		name string
		t    TokenInfo
		want bool
	}{
		{"of the tenant left, before", issued(-time.Second, "1", "k"), true},
		{"of the tenant left, at the same instant", issued(0, "1", "k"), true},
		{"of the tenant left, after", issued(time.Second, "1", "k"), false},
		{"of another tenant, before", issued(-time.Second, "2", "k"), false},
		{"with a retired print, before", issued(-time.Second, "2", "old"), true},
		{"with a retired print, after (the credential back)", issued(time.Second, "2", "old"), false},
		{"printless, before", issued(-time.Second, "2", ""), true},
		{"printless, after", issued(time.Second, "2", ""), false},
		{"of an earlier release, expiring before the end", TokenInfo{Tenant: "2", Expires: t0.Add(MaxTokenTTL - time.Hour)}, true},
		{"of an earlier release, expiring after the end", TokenInfo{Tenant: "2", Expires: t0.Add(MaxTokenTTL + time.Hour)}, false},
	} {
		if got := r.Covers(tc.t); got != tc.want {
			t.Errorf("a token %s: covered %v, want %v", tc.name, got, tc.want)
		}
	}
	if (Revocation{}).Covers(issued(-time.Hour, "1", "")) {
		t.Error("the zero revocation covers a token")
	}
}

// Merge keeps the later time of each part and changes neither side.
func TestRevocationMerge(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a := Revocation{Tenants: map[string]time.Time{"1": t0}, Printless: t0}
	b := Revocation{Tenants: map[string]time.Time{"1": t0.Add(time.Hour), "2": t0}, Retired: map[string]time.Time{"k": t0}}
	got := a.Merge(b)
	want := Revocation{Tenants: map[string]time.Time{"1": t0.Add(time.Hour), "2": t0}, Retired: map[string]time.Time{"k": t0}, Printless: t0}
	if !got.Equal(want) {
		t.Errorf("merged %+v, want %+v", got, want)
	}
	got.Tenants["3"] = t0
	if len(a.Tenants) != 1 || len(b.Tenants) != 2 {
		t.Errorf("the merge shares a map with its sides: %v, %v", a.Tenants, b.Tenants)
	}
}

// Pruned drops the parts made a token lifetime or more ago, and keeps the
// others.
func TestRevocationPruned(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	old, recent := t0.Add(-MaxTokenTTL), t0.Add(-time.Hour)
	r := Revocation{Tenants: map[string]time.Time{"1": old, "2": recent}, Retired: map[string]time.Time{"a": old}, Printless: old}
	want := Revocation{Tenants: map[string]time.Time{"2": recent}}
	if got := r.Pruned(t0); !got.Equal(want) {
		t.Errorf("pruned %+v, want %+v", got, want)
	}
	if got := r.Pruned(t0.Add(MaxTokenTTL)); !got.IsZero() {
		t.Errorf("pruned a lifetime later: %+v, want nothing", got)
	}
}

// A revocation comes back from its JSON record as it was.
func TestRevocationJSON(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)
	for _, r := range []Revocation{{}, {Printless: t0}, {Tenants: map[string]time.Time{"1": t0}, Retired: map[string]time.Time{"0a1b2c3d": t0.Add(time.Hour)}, Printless: t0}} {
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back Revocation
		if err := json.Unmarshal(raw, &back); err != nil || !back.Equal(r) {
			t.Errorf("%s: decoded %+v, %v; want %+v", raw, back, err, r)
		}
	}
}
