package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// refusingIdentity is a client of a registry whose identity service
// refuses every login, and the count of logins.
func refusingIdentity(t *testing.T) (*Client, *atomic.Int32) {
	var logins atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2.0/tokens" {
			logins.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"unauthorized":{"code":401,"message":"Username or api key is invalid."}}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"svc-1","tags":[],"metadata":{},"heartbeat_timeout":30,"last_seen":null}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL + "/v1.0", Username: "alice", APIKey: "rotated", Tenant: "7"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
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

// A token that has not expired is still used while a refusal of the
// credentials is remembered.
func TestRefusalKeepsAValidToken(t *testing.T) {
	c, _ := refusingIdentity(t)
	a := c.auth
	a.mu.Lock()
	a.tok = AuthToken{ID: "tok", Tenant: "7", Expires: time.Now().Add(25 * time.Second)}
	a.refreshAt = time.Now().Add(-time.Second)
	a.mu.Unlock()
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
	var logins, issued atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v2.0/tokens" {
			logins.Add(1)
			n := issued.Add(1)
			io.WriteString(w, `{"access":{"token":{"id":"tok-`+string(rune('a'+n))+`","expires":"2999-01-01T00:00:00Z","tenant":{"id":"7"}}}}`)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"type":"unauthorizedError","code":401,"message":"Invalid or expired authentication token","details":"","txnId":"t"}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL + "/v1.0", Username: "alice", APIKey: "k", Tenant: "7"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for range 20 {
		if _, err := c.GetService(context.Background(), "svc-1"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("with every token refused: %v; want ErrUnauthorized", err)
		}
	}
	if n := logins.Load(); n != 2 {
		t.Errorf("20 calls with every token refused sent %d logins; want 2 (the first, and one after the first 401)", n)
	}
	c.auth.mu.Lock()
	c.auth.heldUntil = time.Now()
	c.auth.mu.Unlock()
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
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Path == "/v2.0/tokens" {
				io.WriteString(w, `{"access":{"token":{"id":"`+tc.token+`","expires":"2999-01-01T00:00:00Z","tenant":{"id":"`+tc.tenant+`"}}}}`)
				return
			}
			io.WriteString(w, `{"id":"svc-1","tags":[],"metadata":{},"heartbeat_timeout":30,"last_seen":null}`)
		}))
		c, err := New(Config{URL: srv.URL + "/v1.0", Username: "alice", APIKey: "k"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetService(context.Background(), "svc-1")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("a token of %d bytes and a tenant of %d: %v", len(tc.token), len(tc.tenant), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || len(err.Error()) > 200):
			t.Errorf("a token of %d bytes and a tenant of %d: %.300v; want %q", len(tc.token), len(tc.tenant), err, tc.want)
		}
		c.Close()
		srv.Close()
	}
}
