package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store"
)

// tokenStore holds issued tokens in a map and counts the reads.
type tokenStore struct {
	store.Identity
	mu     sync.Mutex
	tokens map[[32]byte]store.TokenInfo
	reads  atomic.Int64
}

func (s *tokenStore) Token(_ context.Context, h [32]byte) (store.TokenInfo, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	ti, ok := s.tokens[h]
	if !ok {
		return store.TokenInfo{}, store.ErrTokenUnknown
	}
	return ti, nil
}

func (s *tokenStore) DeleteToken(_ context.Context, h [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, h)
	return nil
}

func (*tokenStore) RevokeUser(context.Context, string, store.Revocation) error { return nil }

// The tokens of the polls a wake-up answers are checked again, each once:
// one cached in the last tokenRecheck at once (refused if revoked here),
// the others by a store read (refused if another node revoked them). A
// thousand polls of one token cost no more than one.
func TestRefusedTokens(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	st := &tokenStore{tokens: map[[32]byte]store.TokenInfo{}}
	a := NewAuth(AuthConfig{Store: st, Users: []User{{Name: "u", Tenant: "1", APIKey: "key-of-u-0123456789abcdef"}},
		Clock: func() time.Time { return time.Unix(0, clock.Load()) }})
	tokens := map[string]string{}
	for _, name := range []string{"live", "revoked", "revoked elsewhere", "stale"} {
		tok := fmt.Sprintf("%064x", sha256.Sum256([]byte(name)))
		st.tokens[sha256.Sum256([]byte(tok))] = store.TokenInfo{User: "u", Tenant: "1", Issued: now.Add(-time.Minute),
			Expires: now.Add(time.Hour), KeyPrint: a.users.Load().prints["u"].key}
		tokens[name] = tok
		if ok, err := a.Valid(context.Background(), tok, "1"); !ok || err != nil {
			t.Fatalf("%s: valid %v, %v", name, ok, err)
		}
	}
	clock.Add(int64(tokenRecheck + time.Second)) // every token's check is stale
	if ok, _ := a.Valid(context.Background(), tokens["live"], "1"); !ok {
		t.Fatal("live token refused")
	}
	r := httptest.NewRequest("DELETE", "/v2.0/tokens/"+tokens["revoked"], nil)
	r.Header.Set("X-Auth-Token", tokens["live"])
	w := httptest.NewRecorder()
	a.serveRevoke(w, r, tokens["revoked"])
	if w.Code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	st.DeleteToken(context.Background(), sha256.Sum256([]byte(tokens["revoked elsewhere"])))
	var polls []*parkedPoll
	for _, tok := range tokens {
		for range 1000 {
			polls = append(polls, &parkedPoll{token: tok, tenant: "1"})
		}
	}
	polls = append(polls, &parkedPoll{token: tokens["live"], tenant: "2"}) // not its tenant's
	st.reads.Store(0)
	s := &Server{auth: a}
	refused := s.refusedTokens(context.Background(), polls)
	for name, tok := range tokens {
		want := name == "revoked" || name == "revoked elsewhere"
		if got := refused[tokenOf{tok, "1"}] != nil; got != want {
			t.Errorf("%s: refused %v, want %v", name, got, want)
		}
	}
	if refused[tokenOf{tokens["live"], "2"}] == nil {
		t.Error("a token accepted for another tenant")
	}
	// The stale token and the one revoked elsewhere, once each.
	if got := st.reads.Load(); got != 2 {
		t.Errorf("%d store reads, want 2", got)
	}
}

// A wake-up whose read of the feed failed answers its polls with the
// fault, and reads none of their tokens: the fault tells the account
// nothing, and the store that failed the read would be asked again for
// every token. One that read the feed checks them.
func TestFaultAnswerReadsNoToken(t *testing.T) {
	now := time.Now()
	st := &tokenStore{tokens: map[[32]byte]store.TokenInfo{}}
	a := NewAuth(AuthConfig{Store: st, Users: []User{{Name: "u", Tenant: "1", APIKey: "key-of-u-0123456789abcdef"}},
		Clock: func() time.Time { return now }})
	tok := fmt.Sprintf("%064x", sha256.Sum256([]byte("polling")))
	st.tokens[sha256.Sum256([]byte(tok))] = store.TokenInfo{User: "u", Tenant: "1", Issued: now.Add(-time.Minute),
		Expires: now.Add(time.Hour), KeyPrint: a.users.Load().prints["u"].key}
	srv := New(Config{Logger: slog.New(slog.DiscardHandler)})
	srv.auth = a
	pl := newPoller(srv)
	for _, tc := range []struct {
		name      string
		err       error
		reads     int64
		wantFirst string
	}{
		{"failed read", fmt.Errorf("%w: etcd: no leader", store.ErrUnavailable), 0, "HTTP/1.1 503"},
		{"page read", nil, 1, "HTTP/1.1 200"},
	} {
		st.reads.Store(0)
		server, client := net.Pipe()
		got := make(chan string, 1)
		go func() {
			b := make([]byte, 64)
			n, _ := io.ReadAtLeast(client, b, len("HTTP/1.1 200"))
			got <- string(b[:n])
		}()
		pl.parked.Add(1)
		p := &parkedPoll{conn: server, token: tok, tenant: "1", q: store.EventQuery{Limit: 100}, routePath: "/v2.0/1/events", timer: time.NewTimer(time.Hour)}
		pl.answerAll(context.Background(), []*parkedPoll{p}, store.EventPage{}, tc.err, false)
		answer := <-got
		client.Close()
		server.Close()
		if !strings.HasPrefix(answer, tc.wantFirst) {
			t.Errorf("%s: answered %.60q, want %s", tc.name, answer, tc.wantFirst)
		}
		if n := st.reads.Load(); n != tc.reads {
			t.Errorf("%s: %d token reads, want %d", tc.name, n, tc.reads)
		}
	}
}
