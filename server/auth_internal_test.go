package server

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store"
)

// Past maxLimiterKeys keys, a new key is still limited: it takes the place
// of the key used least recently, and keys still in use stay limited.
func TestLimiterPastItsKeysEvictsTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newKeyedLimiter(1, time.Minute, func() time.Time { return now })
	for i := range maxLimiterKeys {
		now = now.Add(time.Microsecond)
		if ok, _ := l.reserve("k" + strconv.Itoa(i)); !ok {
			t.Fatalf("key %d refused at its first attempt", i)
		}
	}
	now = now.Add(time.Microsecond)
	if ok, _ := l.reserve("late"); !ok {
		t.Fatal("a new key past the cap refused at its first attempt")
	}
	if ok, retry := l.reserve("late"); ok || retry <= 0 {
		t.Errorf("a new key past the cap got a second attempt of its budget of 1 (retry %v): not limited", retry)
	}
	if _, ok := l.buckets["k0"]; ok {
		t.Error("the least recently used key was kept")
	}
	if ok, _ := l.reserve("k1"); ok {
		t.Error("a key in use was forgotten for the new one")
	}
}

// Short API keys and static tokens are warned about, naming the user but
// never the secret; long ones are not.
func TestShortSecretsAreWarnedAbout(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	long := strings.Repeat("0123456789abcdef", 2)
	a := NewAuth(AuthConfig{Store: revocationSink{}, Logger: slog.New(slog.NewTextHandler(&buf, nil)), Users: []User{
		{Name: "short-key", Tenant: "1", APIKey: "guessable"},
		{Name: "short-token", Tenant: "2", APIKey: long, Tokens: []string{long, "tok"}},
		{Name: "long", Tenant: "3", APIKey: long, Tokens: []string{long}},
	}})
	if err := a.SetUsers([]User{{Name: "reloaded", Tenant: "4", APIKey: "k2"}}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, user := range []string{"short-key", "short-token", "reloaded"} {
		if !strings.Contains(out, "user="+user+" ") {
			t.Errorf("no warning for %s's short secret in:\n%s", user, out)
		}
	}
	for _, secret := range []string{"user=long ", "guessable", "tok ", "k2"} {
		if strings.Contains(out, secret) {
			t.Errorf("the warnings hold %q:\n%s", secret, out)
		}
	}
}

// revocationSink is an identity store that takes users' revocations and
// nothing else.
type revocationSink struct{ store.Identity }

func (revocationSink) RevokeUser(context.Context, string, store.Revocation) error { return nil }
