package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeRegistry is a client, with cfg's credentials, of a registry whose
// answers h writes (JSON), until the test ends.
func fakeRegistry(t *testing.T, cfg Config, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg.URL = srv.URL + "/v1.0"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serviceAnswer is the API's answer to GET /services/svc-1.
const serviceAnswer = `{"id":"svc-1","tags":[],"metadata":{},"heartbeat_timeout":30,"last_seen":null}`

// refusingIdentity is a client of a registry whose identity service
// refuses every login, and the count of logins.
func refusingIdentity(t *testing.T) (*Client, *atomic.Int32) {
	var logins atomic.Int32
	c := fakeRegistry(t, Config{Username: "alice", APIKey: "rotated", Tenant: "7"}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2.0/tokens" {
			logins.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"unauthorized":{"code":401,"message":"Username or api key is invalid."}}`)
			return
		}
		io.WriteString(w, serviceAnswer)
	})
	return c, &logins
}

// An early refresh (a token with minutes left) does not send credentials
// the identity service refused a moment ago either: each failed one, every
// 2.5-7.5 s in a token's last minutes, would be another failed login.
func TestEarlyRefreshHeedsARefusal(t *testing.T) {
	c, logins := refusingIdentity(t)
	a := c.auth
	a.mu.Lock()
	a.tok = AuthToken{ID: "tok", Tenant: "7", Expires: time.Now().Add(4 * time.Minute)}
	a.refused, a.refusedUntil = &Error{StatusCode: 401, Identity: true}, time.Now().Add(time.Hour)
	a.mu.Unlock()
	for range 5 {
		a.mu.Lock()
		a.refreshAt = time.Now().Add(-time.Second) // as retryRefresh's jittered wait passing
		a.mu.Unlock()
		if _, err := a.token(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the joined flight ends
	}
	if n := logins.Load(); n != 0 {
		t.Errorf("with a refusal remembered, early refreshes sent %d logins; want 0", n)
	}
}

// dueToken gives a the token "tok" of tenant 7, which expires in life and
// is due for refresh.
func dueToken(a *authenticator, life time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tok = AuthToken{ID: "tok", Tenant: "7", Expires: time.Now().Add(life)}
	a.refreshAt = time.Now().Add(-time.Second)
}

// A token that has not expired is still used while a refusal of the
// credentials is remembered.
func TestRefusalKeepsAValidToken(t *testing.T) {
	c, _ := refusingIdentity(t)
	a := c.auth
	dueToken(a, 25*time.Second)
	// First call: login refused, refusal recorded, cached token returned.
	if tok, err := a.token(context.Background()); err != nil || tok.ID != "tok" {
		t.Fatalf("first: %v %v", tok, err)
	}
	a.mu.Lock()
	a.refreshAt = time.Now().Add(-time.Second) // retryRefresh's 2.5-7.5 s passed
	a.mu.Unlock()
	tok, err := a.token(context.Background())
	if err != nil || tok.ID != "tok" {
		t.Errorf("token valid for ~25 s more: got %+v, %v; want the cached token", tok, err)
	}
	if _, err := c.GetService(context.Background(), "svc-1"); err != nil {
		t.Errorf("GetService with a valid token: %v", err)
	}
}

// Credentials the identity service refused (a key revoked or rotated) are
// not sent again for a while: the refusal is given back. A heartbeater
// retrying at its pace otherwise made a failed login each time, and the
// server's login limit, kept by client address, refused every client on
// the host within 30 s.
func TestRefusedCredentialsNotSentAgainAtOnce(t *testing.T) {
	t.Parallel()
	c, logins := refusingIdentity(t)
	for range 20 {
		if _, err := c.GetService(context.Background(), "svc-1"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("with refused credentials: %v; want ErrUnauthorized", err)
		}
	}
	if n := logins.Load(); n != 1 {
		t.Errorf("20 calls with refused credentials sent %d logins; want 1", n)
	}
}

// An API that refuses every token, also one just issued (a wrong Tenant),
// makes the client log in again once, then not for a while: a heartbeater
// retrying a few times a second would otherwise log in at each try and
// spend the user's token issues (the server's limit), for every client of
// the user. Once the hold is over, a 401 makes it log in once more.
func TestRefusedFreshTokenHoldsLogins(t *testing.T) {
	t.Parallel()
	c, logins := tokenServer(t, func(string) bool { return false }, nil)
	for range 20 {
		if _, err := c.GetService(context.Background(), "svc-1"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("with every token refused: %v; want ErrUnauthorized", err)
		}
	}
	if n := logins.Load(); n != 2 {
		t.Errorf("20 calls with every token refused sent %d logins; want 2 (the first, and one after the first 401)", n)
	}
	c.auth.held.Store(time.Now().UnixNano())
	c.GetService(context.Background(), "svc-1")
	if n := logins.Load(); n != 3 {
		t.Errorf("after the hold, %d logins; want 3", n)
	}
}

// An identity service that gives a token or tenant of megabytes (each
// request would carry it, each error name it) is refused, with a message
// that says which.
func TestHugeTokenOrTenantRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ token, tenant, want string }{
		{strings.Repeat("t", maxTokenID+1), "7", "token is 16385 bytes, more than 16384"},
		{"tok", strings.Repeat("7", maxTenant+1), "tenant is 257 bytes, more than 256"},
		{strings.Repeat("t", maxTokenID), strings.Repeat("7", maxTenant), ""},
	} {
		c := fakeRegistry(t, Config{Username: "alice", APIKey: "k"}, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2.0/tokens" {
				io.WriteString(w, `{"access":{"token":{"id":"`+tc.token+`","expires":"2999-01-01T00:00:00Z","tenant":{"id":"`+tc.tenant+`"}}}}`)
				return
			}
			io.WriteString(w, serviceAnswer)
		})
		_, err := c.GetService(context.Background(), "svc-1")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("a token of %d bytes and a tenant of %d: %v", len(tc.token), len(tc.tenant), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || len(err.Error()) > 200):
			t.Errorf("a token of %d bytes and a tenant of %d: %.300v; want %q", len(tc.token), len(tc.tenant), err, tc.want)
		}
	}
}

// tokenServer is a registry whose identity service issues tok-1, tok-2,
// … and whose API takes the tokens ok says it takes; it counts logins.
func tokenServer(t *testing.T, ok func(token string) bool, onRequest func(token string)) (*Client, *atomic.Int32) {
	t.Helper()
	var logins atomic.Int32
	c := fakeRegistry(t, Config{Username: "alice", APIKey: "k", Tenant: "7"}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2.0/tokens" {
			n := logins.Add(1)
			fmt.Fprintf(w, `{"access":{"token":{"id":"tok-%d","expires":"2999-01-01T00:00:00Z","tenant":{"id":"7"}}}}`, n)
			return
		}
		tok := r.Header.Get("X-Auth-Token")
		if onRequest != nil {
			onRequest(tok)
		}
		if !ok(tok) {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"type":"unauthorizedError","code":401,"message":"Invalid or expired authentication token","details":"","txnId":"t"}`)
			return
		}
		io.WriteString(w, serviceAnswer)
	})
	return c, &logins
}

// A request the API takes ends a hold of logins: a token refused once
// (a node whose clock is ahead, a users file reloaded node by node) and
// taken after that, then revoked, is replaced at once.
func TestAnswerEndsTheHoldOfLogins(t *testing.T) {
	t.Parallel()
	var takes atomic.Value // the token the API takes
	takes.Store("")
	c, logins := tokenServer(t, func(tok string) bool { return tok == takes.Load().(string) }, nil)
	ctx := context.Background()
	if _, err := c.GetService(ctx, "svc-1"); !errors.Is(err, ErrUnauthorized) { // tok-1, tok-2 refused: held
		t.Fatalf("every token refused: %v", err)
	}
	takes.Store("tok-2")
	if _, err := c.GetService(ctx, "svc-1"); err != nil {
		t.Fatalf("tok-2 taken: %v", err)
	}
	takes.Store("tok-3") // tok-2 revoked
	if _, err := c.GetService(ctx, "svc-1"); err != nil {
		t.Errorf("tok-2 revoked after it was taken: %v; want a new login at once (logins: %d)", err, logins.Load())
	}
}

// Only a token issued after a 401 that the API refuses too holds logins:
// a token an early refresh got while the refused request was under way
// (issued before the 401) does not.
func TestTokenIssuedBeforeThe401HoldsNothing(t *testing.T) {
	t.Parallel()
	var c *Client
	c, _ = tokenServer(t, func(tok string) bool { return tok == "tok-3" }, func(tok string) {
		if tok != "tok-1" {
			return
		}
		// While tok-1's request is under way, an early refresh gets
		// tok-2 (before the 401 that refuses tok-1).
		if _, err := c.auth.authenticate(context.Background()); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	if _, err := c.GetService(ctx, "svc-1"); !errors.Is(err, ErrUnauthorized) { // tok-1 refused, then tok-2
		t.Fatalf("tok-1 and tok-2 refused: %v", err)
	}
	if _, err := c.GetService(ctx, "svc-1"); err != nil {
		t.Errorf("after tok-2, issued before the 401, was refused: %v; want a new login at once", err)
	}
}

// An early refresh that the identity service turns away with a
// Retry-After (a 429: too many tokens issued to the user) is not tried
// again sooner, while the token lasts: retried every 2.5-5 s, each login
// would be turned away again.
func TestEarlyRefreshHeedsRetryAfter(t *testing.T) {
	var logins atomic.Int32
	c := fakeRegistry(t, Config{Username: "alice", APIKey: "key", Tenant: "7"}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2.0/tokens" {
			logins.Add(1)
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"overLimit":{"code":429,"message":"Too many tokens issued."}}`)
			return
		}
		io.WriteString(w, serviceAnswer)
	})
	a := c.auth
	dueToken(a, 4*time.Minute)
	if tok, err := a.token(context.Background()); err != nil || tok.ID != "tok" {
		t.Fatalf("early refresh: %+v, %v; want the cached token", tok, err)
	}
	for range 100 {
		a.flight.mu.Lock()
		done := a.flight.call == nil
		a.flight.mu.Unlock()
		if logins.Load() == 1 && done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	next := time.Until(a.refreshAt)
	a.mu.Unlock()
	if logins.Load() != 1 || next < 59*time.Second {
		t.Errorf("after %d logins, the last answered 429 with a Retry-After of 60 s, the next refresh comes in %v; want no sooner than 60 s", logins.Load(), next.Round(time.Second))
	}
}
