// Package testserver runs a real svcreg server in-process for tests: a
// store, --dev authentication, and an HTTP (or HTTPS) listener on loopback that can be
// stopped and started again on the same address and data. It serves as
// svcreg server does (server.Serve), so waiting long-polls park as they do
// in production.
//
// The store is the embedded one in a temporary directory, or the etcd store
// over an etcd member of internal/etcdtest (under a key prefix of its own),
// so that one suite checks both stores. The etcd store is in a test binary
// that imports internal/testserver/etcdserver (the server's and
// cmd/svcreg's always; the other packages' with -tags etcd): the others
// link no etcd client, which halves their link time. A Clock lets a test move the server's time forward
// instead of sleeping out a timeout.
package testserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/svcreg/svcreg/internal/testcert"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/boltstore"
)

// StoreEnv names the environment variable that picks the store of a
// server whose Options name none: "bolt" (the default) or "etcd". Set, it
// also narrows StoreKinds to that store.
const StoreEnv = "SVCREG_TEST_STORE"

// The stores a test server runs on.
const (
	Bolt = "bolt" // the embedded store
	Etcd = "etcd" // the etcd store
)

// StoreKind returns the store of a server whose Options name none: Bolt,
// or Etcd if StoreEnv says so.
func StoreKind() string {
	if os.Getenv(StoreEnv) == Etcd {
		return Etcd
	}
	return Bolt
}

// StoreKinds returns the stores a suite that checks every store runs on:
// both, or only the one StoreEnv names. An etcd-store server needs
// internal/testserver/etcdserver in the test binary.
func StoreKinds() []string {
	switch os.Getenv(StoreEnv) {
	case Bolt, Etcd:
		return []string{os.Getenv(StoreEnv)}
	}
	return []string{Bolt, Etcd}
}

// A Backend is where a test server's state lives across its restarts: it
// opens the server's store, again on each start.
type Backend interface {
	Open(Options) (Store, error)
}

// newEtcdBackend makes the backend of an etcd-store server; nil unless
// internal/testserver/etcdserver is linked in. Set only while packages are
// initialized, before any test runs.
var newEtcdBackend func(testing.TB) Backend

// RegisterEtcd makes etcd-store servers available: newBackend makes the
// backend of one. internal/testserver/etcdserver calls it from its init.
func RegisterEtcd(newBackend func(testing.TB) Backend) {
	newEtcdBackend = newBackend
}

// Clock is a server's clock that runs with real time and that a test moves
// forward, so that a heartbeat deadline or a token's expiry passes without
// the test waiting for it. The zero value reads the real time.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the real time plus every Advance so far.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// Store is what a server needs of its store: the registry's state and the
// identity endpoint's.
type Store interface {
	store.Store
	store.Identity
}

// Options configure a test server. The zero value is a --dev server with
// the default reaper.
type Options struct {
	// Store is Bolt or Etcd; StoreKind() if empty.
	Store string
	// Clock, if set, is the time of the server, its store and its
	// authentication; the real time if nil.
	Clock *Clock
	// DataDir holds the embedded store; a new temporary directory if
	// empty. The etcd store keeps its data in its etcd.
	DataDir string
	// ReapInterval as in boltstore.Options and etcdstore.Options (negative
	// turns the reaper off).
	ReapInterval time.Duration
	// Limits for new accounts; the defaults if zero.
	Limits store.Limits
	// Retention of events; 30 days if zero.
	Retention time.Duration
	// MaxEvents an account keeps; store.DefaultMaxEvents if zero.
	MaxEvents int
	// WriteRate and WriteBurst as in server.Config, except that a zero
	// WriteRate leaves writes unlimited (svcreg server limits them by
	// default): tests and benchmarks write in bulk.
	WriteRate  float64
	WriteBurst int
	// Users, if set, are the users file's, instead of --dev.
	Users []server.User
	// AuthLimits of the identity endpoint; if zero, none (tests log in
	// often from one address).
	AuthLimits server.AuthLimits
	// TokenTTL of issued tokens; 24h if zero.
	TokenTTL time.Duration
	// Wrap, if set, wraps the server's handler (for fault injection).
	Wrap func(http.Handler) http.Handler
	// ConnState, if set, is the http.Server's ConnState hook (to count the
	// connections clients open).
	ConnState func(net.Conn, http.ConnState)
	// TLS serves HTTPS, as svcreg server --tls-cert does, with a
	// self-signed certificate for 127.0.0.1 that no system root trusts:
	// Server.CACert is a PEM file of it.
	TLS bool
}

// Server is a running test server.
type Server struct {
	// URL is the server's root, e.g. http://127.0.0.1:41234 (https://
	// with Options.TLS).
	URL string
	// APIURL is URL + "/v1.0"; AuthURL is URL + "/v2.0".
	APIURL, AuthURL string
	// CACert is, with Options.TLS, the path of a PEM file of the server's
	// self-signed certificate, the CA a client must trust; empty without.
	CACert string

	// tls is the listener's configuration with Options.TLS; hc, the client
	// that trusts its certificate, for Token.
	tls *tls.Config
	hc  *http.Client

	t    testing.TB
	opts Options
	addr string

	// backend opens the store again on each start.
	backend Backend

	mu      sync.Mutex
	store   Store
	api     *server.Server
	reg     *prometheus.Registry // the running server's metrics
	http    *http.Server
	cancel  context.CancelFunc
	done    chan struct{}
	running bool
	// hold keeps the address while the server is stopped (see holdPort).
	hold io.Closer
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, opts: opts, backend: newBackend(t, opts)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.URL = "http://" + s.addr
	s.hc = http.DefaultClient
	if opts.TLS {
		s.URL = "https://" + s.addr
		s.selfSign()
	}
	s.APIURL, s.AuthURL = s.URL+"/v1.0", s.URL+"/v2.0"
	s.start(ln)
	t.Cleanup(func() {
		s.Stop()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.hold != nil {
			s.hold.Close()
			s.hold = nil
		}
	})
	return s
}

// selfSign makes the certificate of a server with Options.TLS, writes it
// to CACert, and sets up the listener's configuration and a client that
// trusts it.
func (s *Server) selfSign() {
	s.t.Helper()
	cert := testcert.New(s.t, "svcreg testserver", 1)
	s.CACert = filepath.Join(s.t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.CACert, cert.PEM(), 0o644); err != nil {
		s.t.Fatalf("testserver: %v", err)
	}
	s.tls = &tls.Config{Certificates: []tls.Certificate{cert.TLS()}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	s.hc = &http.Client{Transport: tr}
	s.t.Cleanup(tr.CloseIdleConnections)
}

// Metric returns the value of the running server's counter or gauge
// name, as the function Metric does.
func (s *Server) Metric(name string, labels ...string) float64 {
	s.t.Helper()
	s.mu.Lock()
	reg := s.reg
	s.mu.Unlock()
	return Metric(s.t, reg, name, labels...)
}

// Metric returns the value of the counter or gauge name that g gathers,
// of its first series with the given label name and value pairs; 0 if there
// is none.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == pairs[i] && l.GetValue() == pairs[i+1]
		}) {
			return false
		}
	}
	return true
}

func (s *Server) start(ln net.Listener) {
	s.t.Helper()
	st, err := s.backend.Open(s.opts)
	if err != nil {
		ln.Close()
		s.t.Fatalf("testserver: open store: %v", err)
	}
	limits := s.opts.AuthLimits
	if limits == (server.AuthLimits{}) {
		limits = server.AuthLimits{FailuresPerAddress: -1, FailuresPerUser: -1, IssuesPerUser: -1}
	}
	now := s.opts.Now()
	auth := server.NewAuth(server.AuthConfig{Store: st, Users: s.opts.Users, Dev: s.opts.Users == nil, TokenTTL: s.opts.TokenTTL, Limits: limits, Clock: now})
	if err := auth.LoadRevocations(context.Background()); err != nil {
		ln.Close()
		s.t.Fatalf("testserver: %v", err)
	}
	writeRate := s.opts.WriteRate
	if writeRate == 0 {
		writeRate = -1
	}
	reg := prometheus.NewRegistry()
	api := server.New(server.Config{Store: st, Auth: auth, WriteRate: writeRate, WriteBurst: s.opts.WriteBurst, Clock: now, Registerer: reg})
	var h http.Handler = api
	if s.opts.Wrap != nil {
		h = s.opts.Wrap(h)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: s.opts.ConnState}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
		// Tests make clients that do not trust the certificate: the
		// handshakes they fail are what those tests look for, not news.
		hs.ErrorLog = log.New(io.Discard, "", 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); st.Run(ctx) }()
		if err := api.Serve(hs, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.t.Errorf("testserver: serve: %v", err)
		}
		wg.Wait()
	}()
	s.mu.Lock()
	s.store, s.api, s.reg, s.http, s.cancel, s.done, s.running = st, api, reg, hs, cancel, done, true
	s.mu.Unlock()
}

// Stop stops the server gracefully, as SIGTERM does: long-polls are
// answered, heartbeat state is written, the store is closed. Until
// Restart, connections to its address are refused and no other listener
// can take the address.
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
	var err error
	if s.hold, err = holdPort(s.addr); err != nil {
		s.t.Logf("testserver: %v; another listener may take the stopped server's port", err)
	}
}

// holdPort binds a socket to addr without listening on it, so that while
// the server is stopped, connections to addr are refused as they are by a
// registry that is down, and no listener on port 0 (a parallel test's
// server) is given the address: a client that should find the registry
// down would otherwise reach another test's server.
func holdPort(addr string) (io.Closer, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	if !ap.Addr().Is4() {
		return nil, fmt.Errorf("hold %s: not an IPv4 address", addr)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	f := os.NewFile(uintptr(fd), "hold "+addr)
	// The server's closed connections linger in TIME_WAIT on the port,
	// which a bind without SO_REUSEADDR refuses. With it, the port is
	// still never handed out to a bind to port 0 while another port is
	// free: the kernel's first pass over the ephemeral range treats a
	// bound socket as a conflict even when both sides allow reuse.
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		f.Close()
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if err := syscall.Bind(fd, sa); err != nil {
		f.Close()
		return nil, fmt.Errorf("hold %s: %w", addr, err)
	}
	return f, nil
}

// Restart starts the server again on the same address and data directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.mu.Lock()
	if s.hold != nil {
		s.hold.Close()
		s.hold = nil
	}
	s.mu.Unlock()
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
	resp, err := s.hc.Post(s.AuthURL+"/tokens", "application/json", strings.NewReader(body))
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

// Now is the clock the options give: Clock.Now, or time.Now.
func (o Options) Now() func() time.Time {
	if o.Clock == nil {
		return time.Now
	}
	return o.Clock.Now
}

// NewStore opens a store of the kind opts names, as Start would, and
// closes it when the test ends. Its background work (reaper, retention)
// does not run.
func NewStore(t testing.TB, opts Options) Store {
	t.Helper()
	st, err := newBackend(t, opts).Open(opts)
	if err != nil {
		t.Fatalf("testserver: open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// boltBackend keeps an embedded store's data directory.
type boltBackend struct{ dir string }

func (b boltBackend) Open(opts Options) (Store, error) {
	return boltstore.Open(b.dir, boltstore.Options{
		Clock:         opts.Now(),
		ReapInterval:  opts.ReapInterval,
		DefaultLimits: opts.Limits,
		Retention:     opts.Retention,
		MaxEvents:     opts.MaxEvents,
	})
}

// newBackend returns the backend of a server of opts.
func newBackend(t testing.TB, opts Options) Backend {
	t.Helper()
	if cmp.Or(opts.Store, StoreKind()) == Etcd {
		if newEtcdBackend == nil {
			t.Fatalf("testserver: this test binary has no etcd store: build it with -tags etcd (SVCREG_TEST_STORE=etcd go test -tags etcd ./...), or import github.com/svcreg/svcreg/internal/testserver/etcdserver in its tests")
		}
		return newEtcdBackend(t)
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	return boltBackend{dir: opts.DataDir}
}
