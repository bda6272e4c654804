// Package testserver runs a real svcreg server in-process for tests: the
// embedded store in a temporary directory, --dev authentication, and an
// HTTP listener on loopback that can be stopped and started again on the
// same address and data.
package testserver

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/boltstore"
)

// Options configure a test server. The zero value is a --dev server with
// the default reaper.
type Options struct {
	// DataDir holds the store; a new temporary directory if empty.
	DataDir string
	// ReapInterval as in boltstore.Options (negative turns the reaper off).
	ReapInterval time.Duration
	// Limits for new accounts; the defaults if zero.
	Limits store.Limits
	// Retention of events; 30 days if zero.
	Retention time.Duration
	// Users in addition to --dev.
	Users []server.User
	// TokenTTL of issued tokens; 24h if zero.
	TokenTTL time.Duration
	// Wrap, if set, wraps the server's handler (for fault injection).
	Wrap func(http.Handler) http.Handler
	// ConnState, if set, is the http.Server's ConnState hook (to count the
	// connections clients open).
	ConnState func(net.Conn, http.ConnState)
}

// Server is a running test server.
type Server struct {
	// URL is the server's root, e.g. http://127.0.0.1:41234.
	URL string
	// APIURL is URL + "/v1.0"; AuthURL is URL + "/v2.0".
	APIURL, AuthURL string

	t    testing.TB
	opts Options
	addr string

	mu      sync.Mutex
	store   *boltstore.Store
	api     *server.Server
	http    *http.Server
	cancel  context.CancelFunc
	done    chan struct{}
	running bool
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	s := &Server{t: t, opts: opts}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.URL = "http://" + s.addr
	s.APIURL, s.AuthURL = s.URL+"/v1.0", s.URL+"/v2.0"
	s.start(ln)
	t.Cleanup(s.Stop)
	return s
}

// Store returns the running server's store.
func (s *Server) Store() *boltstore.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store
}

func (s *Server) start(ln net.Listener) {
	s.t.Helper()
	st, err := boltstore.Open(s.opts.DataDir, boltstore.Options{
		ReapInterval:  s.opts.ReapInterval,
		DefaultLimits: s.opts.Limits,
		Retention:     s.opts.Retention,
	})
	if err != nil {
		ln.Close()
		s.t.Fatalf("testserver: open store: %v", err)
	}
	auth := server.NewAuth(server.AuthConfig{Store: st, Users: s.opts.Users, Dev: true, TokenTTL: s.opts.TokenTTL})
	api := server.New(server.Config{Store: st, Auth: auth})
	var h http.Handler = api
	if s.opts.Wrap != nil {
		h = s.opts.Wrap(h)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: s.opts.ConnState}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); st.Run(ctx) }()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.t.Errorf("testserver: serve: %v", err)
		}
		wg.Wait()
	}()
	s.mu.Lock()
	s.store, s.api, s.http, s.cancel, s.done, s.running = st, api, hs, cancel, done, true
	s.mu.Unlock()
}

// Stop stops the server gracefully, as SIGTERM does: long-polls are
// answered, heartbeat state is written, the store is closed. The address
// stays reserved for Restart only in the sense that nothing else in the
// test should take it.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return
	}
	s.running = false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.api.Drain(ctx)
	if err := s.http.Shutdown(ctx); err != nil {
		s.http.Close()
	}
	s.cancel()
	<-s.done
	if err := s.store.Close(); err != nil {
		s.t.Errorf("testserver: close store: %v", err)
	}
}

// Restart starts the server again on the same address and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger for a moment
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("testserver: listen again on %s: %v", s.addr, err)
	}
	s.start(ln)
}

// Token authenticates username with the --dev API key and returns the token
// and the user's tenant.
func (s *Server) Token(username string) (token, tenant string) {
	s.t.Helper()
	body := `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":` + quote(username) + `,"apiKey":"dev"}}}`
	resp, err := http.Post(s.AuthURL+"/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		s.t.Fatalf("testserver: authenticate %s: %v", username, err)
	}
	defer resp.Body.Close()
	var out struct {
		Access struct {
			Token struct {
				ID     string `json:"id"`
				Tenant struct {
					ID string `json:"id"`
				} `json:"tenant"`
			} `json:"token"`
		} `json:"access"`
	}
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("testserver: authenticate %s: status %d", username, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		s.t.Fatalf("testserver: authenticate %s: %v", username, err)
	}
	return out.Access.Token.ID, out.Access.Token.Tenant.ID
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
