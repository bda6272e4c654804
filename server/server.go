// Package server is the Service Registry API server: routing on the raw
// path, the body checks, validation and fault bodies of the spec, the
// identity endpoint, and long-polls on the events feed. State lives behind
// store.Store.
package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/server/store"
)

// Config holds a Server's dependencies and settings. Store and Auth are
// required; every other field has a default.
type Config struct {
	// Store holds the registry's state; the Server does not close it.
	Store store.Store
	// Auth serves /v2.0/tokens and checks the API's tokens (NewAuth).
	Auth *Auth
	// Logger receives request and error logs; nothing is logged if nil.
	Logger *slog.Logger
	// Registerer receives the server's metrics; none if nil.
	Registerer prometheus.Registerer
	// Metrics serves GET /metrics; 404 if nil.
	Metrics http.Handler
	// UI serves /ui and everything under /ui/ (the dashboard); 404 if nil.
	UI http.Handler
	// Clock returns the current time; time.Now if nil.
	Clock func() time.Time
	// The limits below keep one tenant from holding the descriptors of all
	// (docs/security.md). Those left zero are derived from the process's
	// descriptor limit (RLIMIT_NOFILE) by ConnLimits.

	// MaxConns is how many client connections (waiting long-polls
	// included) the server holds before a new one closes another to make
	// room: one that has waited on its client for 5 s (a slow request, an
	// answer not taken), else the longest-idle keep-alive connection,
	// else one that has waited on its client for a second, else one whose
	// request is still arriving; if none, the new one is let in over it.
	MaxConns int
	// MaxWaiters caps the long-polls waiting in all tenants, and
	// MaxWaitersPerTenant those of one tenant; past either, GET /events
	// answers at once.
	MaxWaiters          int
	MaxWaitersPerTenant int
	// MaxListReadsWaitingPerTenant caps the list reads of one tenant
	// waiting for its turn (readGate), each holding its connection; past
	// it, a list read is refused at once (rate-limited, Retry-After 1 s).
	MaxListReadsWaitingPerTenant int
	// MaxUnsentBytes bounds the bytes of list answers built and not yet
	// written to their clients (a client that does not read holds its
	// answer until the write timeout), and an eighth of it those of one
	// tenant; past either, a list read is refused (rate-limited,
	// Retry-After 1 s). DefaultMaxUnsentBytes if not positive.
	MaxUnsentBytes int64
	// MaxIdleConns caps the keep-alive connections idle between requests,
	// and MaxIdleConnsPerTenant those whose last request was one tenant's;
	// past either, the longest-idle one is closed.
	MaxIdleConns          int
	MaxIdleConnsPerTenant int
	// UnauthIdleTimeout closes a keep-alive connection that stays idle this
	// long without having sent an authenticated request; 10s if zero.
	UnauthIdleTimeout time.Duration
	// MaxWait caps a long-poll's wait; 10 minutes if zero.
	MaxWait time.Duration
	// RateLimit is how many GET requests a tenant may make in a day
	// (spec §10.3); 500000 if not positive.
	RateLimit int
	// WriteRate is how many writes (creates, updates and deletes of
	// services and configuration values) a tenant may make per second,
	// after a burst of WriteBurst; DefaultWriteRate if zero, no limit if
	// negative.
	WriteRate float64
	// WriteBurst is how many writes a tenant may make at once;
	// DefaultWriteBurst if not positive.
	WriteBurst int
}

// Defaults of Config.WriteRate and Config.WriteBurst: a deploy may set a
// whole account's configuration values (1000) at once.
const (
	DefaultWriteRate  = store.DefaultWriteRate
	DefaultWriteBurst = store.DefaultWriteBurst
)

// Server serves the API. It is an http.Handler.
type Server struct {
	cfg     Config
	store   store.Store
	auth    *Auth
	log     *slog.Logger
	now     func() time.Time
	router  *router
	metrics serverMetrics
	rate    *rateLimiter
	writes  *writeLimiter // nil: no limit
	// failLog bounds the log lines of failed requests (logLimit).
	failLog *logLimit

	txnPrefix string
	txnSeq    atomic.Uint64
	// txnKey encrypts txnSeq into a transaction id: ids stay unique, and
	// one says nothing of how many requests the server took since another
	// (any account's: their heartbeat rate, their deploys).
	txnKey cipher.Block

	poller *poller
	conns  *connTracker
	reads  *readGate
	unsent *unsentBudget

	closing   chan struct{} // closed by Drain
	closeOnce sync.Once

	unhealthy atomic.Bool // /healthz last answered 503
}

// New returns a Server. It starts nothing: serve it with Serve (or as an
// http.Handler), and call Drain when done, which also releases what Serve
// took to watch parked long-polls. It panics if the Registerer holds the
// server's metrics already.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	cfg = ConnLimits(cfg, descriptorLimit())
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 10 * time.Minute
	}
	if cfg.RateLimit <= 0 {
		cfg.RateLimit = 500000
	}
	if cfg.WriteRate == 0 {
		cfg.WriteRate = DefaultWriteRate
	}
	if cfg.WriteBurst <= 0 {
		cfg.WriteBurst = DefaultWriteBurst
	}
	var b [6]byte
	rand.Read(b[:])
	var key [16]byte
	rand.Read(key[:])
	txnKey, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 16-byte key is an AES-128 key
	}
	s := &Server{
		cfg:       cfg,
		store:     cfg.Store,
		auth:      cfg.Auth,
		log:       cfg.Logger,
		now:       cfg.Clock,
		metrics:   newServerMetrics(cfg.Registerer),
		rate:      newRateLimiter(cfg.RateLimit, cfg.Clock),
		txnPrefix: "svcreg-" + hex.EncodeToString(b[:]) + "-",
		txnKey:    txnKey,
		closing:   make(chan struct{}),
		failLog:   newLogLimit(failLogRate, failLogBurst, cfg.Clock),
	}
	if cfg.WriteRate > 0 {
		s.writes = newWriteLimiter(cfg.WriteRate, cfg.WriteBurst, cfg.Clock)
	}
	s.reads = newReadGate(listReadSlots(), cfg.MaxListReadsWaitingPerTenant, s.metrics.readsQueued, s.metrics.readsRefused)
	s.unsent = newUnsentBudget(cfg.MaxUnsentBytes, s.metrics.unsentRefused, s.metrics.unsentBytes)
	s.poller = newPoller(s)
	registerParked(cfg.Registerer, s.poller.parkedCount)
	s.conns = newConnTracker(s)
	s.router = newRouter(s.routes())
	return s
}

// Drain answers every waiting long-poll at once, waiting for the answers to
// be written until ctx is done, and makes new long-polls answer without
// waiting. Call it before http.Server.Shutdown.
func (s *Server) Drain(ctx context.Context) {
	s.closeOnce.Do(func() { close(s.closing) })
	s.poller.drain(ctx)
}

func (s *Server) nextTxnID() string {
	var block [aes.BlockSize]byte
	binary.BigEndian.PutUint64(block[8:], s.txnSeq.Add(1))
	s.txnKey.Encrypt(block[:], block[:])
	var hx [2 * aes.BlockSize]byte
	hex.Encode(hx[:], block[:])
	return s.txnPrefix + string(hx[:])
}

// maxHost is the longest Host header taken: a DNS name is 253 bytes at
// most, an IPv6 address with a zone and port some 60.
const maxHost = 512

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK, ct: s.conns, ci: s.conns.requestRead(r)}
	name := "other"
	path := rawPath(r)
	switch {
	case len(r.Host) > maxHost:
		// Answers copy it: the identity's a dozen times (its service
		// catalog's URLs), past any budget of answers not taken.
		msg := fmt.Sprintf("The Host header is %d bytes; a host name and port are %d at most.", len(r.Host), maxHost)
		if hasPathPrefixFold(path, "/v2.0") {
			name = "identity"
			keystoneFault(sw, http.StatusBadRequest, "badRequest", msg)
			break
		}
		s.writeFault(sw, s.newRequest(sw, r), badRequest(msg))
	case hasPathPrefixFold(path, "/v1.0"):
		name = s.serveAPI(sw, r, path[len("/v1.0"):])
	case hasPathPrefixFold(path, "/v2.0/tokens"):
		name = "identity"
		s.auth.ServeTokens(sw, r, path[len("/v2.0/tokens"):])
	case path == "/healthz":
		name = "healthz"
		s.serveHealth(sw, r)
	case path == "/metrics" && s.cfg.Metrics != nil:
		name = "metrics"
		s.cfg.Metrics.ServeHTTP(sw, r)
	case (path == "/ui" || strings.HasPrefix(path, "/ui/")) && s.cfg.UI != nil:
		name = "ui"
		s.cfg.UI.ServeHTTP(sw, r)
	default:
		s.writeFault(sw, s.newRequest(sw, r), notFoundPage(r.RequestURI))
	}
	d := time.Since(start)
	if sw.hijacked {
		return // a parked long-poll, counted when it is answered
	}
	if sw.ci != nil {
		// Until the answer is flushed (the connection idle again), the
		// client must take it.
		now := start.Add(d) // no second clock read
		sw.answer(now)
		sw.ci.writing.Store(now.UnixNano())
	}
	s.metrics.requests.WithLabelValues(name, strconv.Itoa(sw.status)).Inc()
	// Its attributes are built only for a log that takes the line: every
	// request passes here.
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("method", logValue(r.Method)), slog.String("uri", logValue(loggedURI(r))), slog.String("route", name),
			slog.Int("status", sw.status), slog.Duration("duration", d), slog.String("remote", r.RemoteAddr))
	}
}

// rawPath is the request path exactly as sent (spec §2.1: never cleaned).
func rawPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		p, _, _ := strings.Cut(r.RequestURI, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// originForm is the request target as path and query. An absolute-form
// request line (GET http://host/v1.0/…, RFC 9112 §3.2.2) gives its path and
// query, so that a host of digits is never taken for a tenant.
func originForm(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	if r.URL.RawQuery == "" {
		return r.URL.EscapedPath()
	}
	return r.URL.EscapedPath() + "?" + r.URL.RawQuery
}

// hasPathPrefixFold reports whether path is prefix or begins with prefix
// followed by a slash, ignoring case.
func hasPathPrefixFold(path, prefix string) bool {
	if len(path) < len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// newRequest is r's record for the API's answers, with a transaction id
// of its own, which w's answer carries (X-Response-Id).
func (s *Server) newRequest(w http.ResponseWriter, r *http.Request) *request {
	rq := &request{r: r, txnID: s.nextTxnID()}
	w.Header().Set("X-Response-Id", rq.txnID)
	return rq
}

// serveAPI runs the /v1.0 pipeline and writes the fault of any step that
// fails. It returns the route's name.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, path string) string {
	rq := s.newRequest(w, r)
	name, err := s.handleAPI(w, rq, path)
	if err != nil {
		s.writeFault(w, rq, err)
	}
	return name
}

// handleAPI runs the steps of the /v1.0 pipeline: body checks,
// authentication, account, rate limit, routing, handler. It returns the
// route's name, and the error to answer with when a step fails.
func (s *Server) handleAPI(w http.ResponseWriter, rq *request, path string) (string, error) {
	r := rq.r
	if (r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodDelete) && crossOrigin(r) {
		// A page of another origin can make a browser send a write (a
		// form, a fetch without CORS and with a body of no type), with a
		// token in the query (x-auth-token) it learnt somewhere. No API
		// client sends another origin; the dashboard sends its own. Its
		// reads are the browser's to keep from the page (no CORS).
		return "none", crossOriginWrite
	}
	b, f, tooLarge := readBody(r)
	if tooLarge {
		// spec §2.3: 413 with an empty body, and the connection closed.
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return "none", nil
	}
	if f != nil {
		return "none", f
	}
	rq.body = b
	if n := queryParams(r.URL.RawQuery); n > maxQueryParams {
		// Before the parse, and before authentication: tens of thousands
		// of parameters fit in the header limit, and parsing them costs
		// milliseconds of CPU, which anyone could have for nothing.
		return "none", badRequest(fmt.Sprintf("The query string has %d parameters, and a request may have %d at most: leave out the parameters the API does not use.", n, maxQueryParams))
	}
	rq.query = parseQuery(r.URL.RawQuery)

	if err := s.authenticate(rq); err != nil {
		return "none", err
	}
	s.conns.authenticated(r.Context(), rq.tenant)
	acct, err := s.store.Account(r.Context(), rq.tenant)
	if err != nil {
		return "none", err
	}
	rq.account = acct
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		used, at, ok := s.rate.take(rq.tenant)
		rq.rateUsed, rq.rateAt = used, at
		if !ok {
			return "none", &fault{Status: http.StatusBadRequest, Type: faultRateLimit,
				Message: "Rate limit has been reached.",
				Details: "Limit of " + strconv.Itoa(s.cfg.RateLimit) + " requests in 86400 seconds for path \"/.*\" has been reached"}
		}
	}
	rt, params, routePath := s.router.match(r.Method, path)
	if rt == nil {
		return "unmatched", notFoundPage(r.RequestURI)
	}
	rq.params, rq.routePath = params, routePath
	if f := s.limitWrite(rq, rt.name); f != nil {
		return rt.name, f
	}
	err = rt.handle(w, rq)
	if f := (*fault)(nil); rq.rateAt != 0 && errors.As(err, &f) && f.readRefused {
		s.rate.giveBack(rq.tenant, rq.rateAt)
	}
	return rt.name, err
}

// authenticate resolves the tenant and checks the token (spec §3.2, §3.3).
func (s *Server) authenticate(rq *request) error {
	r := rq.r
	tenant := r.Header.Get("X-Tenant-Id")
	if tenant == "" {
		tenant = tenantFromURL(originForm(r))
	}
	if tenant == "" {
		return unauthorized("No tenant id provided")
	}
	token, ok := rq.query.get("x-auth-token")
	if !ok {
		token = r.Header.Get("X-Auth-Token")
	}
	if token == "" {
		return unauthorized("No authentication token provided")
	}
	valid, err := s.auth.Valid(r.Context(), token, tenant)
	if err != nil {
		return err
	}
	if !valid {
		return tokenRefused()
	}
	rq.tenant, rq.token = tenant, token
	return nil
}

// stillValid is nil if the token rq was authenticated with is still a live
// token of its tenant, else the fault to answer with: a long-poll answers
// long after its request was authenticated, and its token may have been
// revoked (or have expired) meanwhile; the account's events since are not
// for it.
func (s *Server) stillValid(ctx context.Context, rq *request) error {
	valid, err := s.auth.Valid(ctx, rq.token, rq.tenant)
	if err != nil {
		return err
	}
	if !valid {
		return tokenRefused()
	}
	return nil
}

func tokenRefused() *fault { return unauthorized("Invalid or expired authentication token") }

// tenantFromURL is the first run of digits right after a slash in the
// request URL, as the original's proxy found it (spec §3.2 step 1).
func tenantFromURL(uri string) string {
	for i := 0; i+1 < len(uri); i++ {
		if uri[i] != '/' || !isDigit(uri[i+1]) {
			continue
		}
		j := i + 1
		for j < len(uri) && isDigit(uri[j]) {
			j++
		}
		return uri[i+1 : j]
	}
	return ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// serveHealth answers /healthz: 200 while the store answers, 503 while it
// does not. The answer does not say why: anyone may ask, and the store's
// error can name its endpoints. The log says why, once each time the
// answer changes, so a probe every second does not fill it.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	// The ping does not end with the request: a client that hangs up (a
	// probe whose timeout is under the ping's 2 s) must neither flip the
	// health state by ending the ping nor keep a real outage from
	// showing in it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	err := s.store.Ping(ctx)
	if down := err != nil; s.unhealthy.Swap(down) != down {
		if !down {
			s.log.Info("store answers /healthz again")
		} else {
			s.log.Warn("store does not answer /healthz", "err", logValue(err.Error()))
		}
	}
	switch {
	case r.Context().Err() != nil:
		w.WriteHeader(statusClientGone) // no one to answer
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
	ct       *connTracker
	ci       *connInfo // the connection's record, nil if it has none
	answered bool      // ct knows the answer is being written
	// moved is when the answer's connection was last put at the tail of
	// the tracker's waiting list: as the answer started, then as a write
	// returned stalledAfter or more since (progressed).
	moved time.Time
}

// answer tells the tracker, once, that the answer is being written, as
// of now; later, that a write returned by now, if it has been a while.
func (w *statusWriter) answer(now time.Time) {
	switch {
	case !w.answered:
		w.answered, w.moved = true, now
		w.ct.startAnswer(w.ci, now)
	case now.Sub(w.moved) >= stalledAfter:
		w.moved = now
		w.ct.progressed(w.ci, now)
	}
}

// writeChunk is how much of an answer Write sends at a time: a write
// that blocks is timed from its chunk's start, so that a large answer
// taken steadily by a slow client is not taken for one its client does
// not read.
const writeChunk = 64 << 10

// Write notes on the connection's record that it waits on the client
// while a write blocks (connTracker).
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.ci == nil {
		return w.ResponseWriter.Write(b)
	}
	now := time.Now()
	w.answer(now)
	defer w.ci.writing.Store(0)
	written := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), writeChunk)]
		if written > 0 {
			now = time.Now()
			w.answer(now)
		}
		w.ci.writing.Store(now.UnixNano())
		n, err := w.ResponseWriter.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		b = b[len(chunk):]
	}
	return written, nil
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
