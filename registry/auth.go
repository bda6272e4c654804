package registry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/svcreg/svcreg/internal/retry"
)

// The Keystone v2 identity services of the two regions (spec §3.1).
const (
	AuthURLUS = "https://identity.api.rackspacecloud.com/v2.0"
	AuthURLUK = "https://lon.identity.api.rackspacecloud.com/v2.0"
)

// AuthToken is an API token and the tenant it is for.
type AuthToken struct {
	ID     string
	Tenant string
	// Expires is when the identity service says the token expires; zero
	// for a static token or when the identity service did not say.
	Expires time.Time
}

const (
	// authTimeout bounds one authentication request.
	authTimeout = 30 * time.Second
	// defaultTokenLife is how long a token is used when the identity
	// service gives no usable expiry: the Node client's cacheTokenFor.
	defaultTokenLife = 10 * time.Minute
	// maxRefreshEarly is the most a token is refreshed before it expires.
	maxRefreshEarly = 5 * time.Minute
)

// authenticator holds the client's token: a static one, or one from the
// identity service, cached until shortly before it expires. Concurrent
// refreshes are merged into one request.
type authenticator struct {
	client *Client

	static  bool
	authURL string // AuthURL or a Region's; "" for the registry's own
	// identity holds, without authURL, the identity endpoint of each of
	// the client's base URLs (Client.bases): authentication goes to the
	// current node's, and fails over as requests do.
	identity []string
	body     []byte // the POST /tokens body
	tenant   string // Config.Tenant
	username string
	// secret is the API key or password the login sends: an identity
	// service (or a proxy before it) may quote the request in its error
	// answer, which is logged.
	secret string

	mu        sync.Mutex
	tok       AuthToken
	refreshAt time.Time
	flight    flight[AuthToken]
	// refused is the identity service's last refusal of the credentials
	// (401), given back without asking again until refusedUntil.
	refused      error
	refusedUntil time.Time
	// tokStarted is the number of the login that got tok (started counts
	// the logins started): a token issued after a 401 is one of a login
	// numbered past the count at the 401 (issuedAfter).
	tokStarted uint64
	started    atomic.Uint64
	// held, if not 0, is when (Unix ns) a 401 may make the client log in
	// again: the API refused a token just issued (holdRenewals).
	held atomic.Int64
	// sendingTo is the URL of the identity service the login under way
	// (the last one) was sent to, as an error shows it: what a caller that
	// stops waiting for the login was waiting on (loginUnanswered).
	sendingTo atomic.Pointer[string]
}

// refusedFor is how long a refusal of the credentials is given back
// without asking again (jittered): a key revoked or rotated is not valid
// again a moment later, and every failed login counts against the login
// limit of the client's address, which the other clients on its host
// share (the server's: 30 in a row, then one every 2 s). A heartbeater
// retrying at its pace (a few a second for short timeouts) had every
// client on the host refused logins within 30 s.
const refusedFor = 30 * time.Second

func newAuthenticator(cfg Config, bases []string) (*authenticator, error) {
	if cfg.Token != "" {
		if cfg.Tenant == "" {
			return nil, errors.New("registry: a static Token needs its Tenant")
		}
		return &authenticator{static: true, tok: AuthToken{ID: cfg.Token, Tenant: cfg.Tenant}}, nil
	}
	if cfg.Username == "" || (cfg.APIKey == "" && cfg.Password == "") {
		return nil, errors.New("registry: give a Token and Tenant, or a Username with an APIKey or Password")
	}
	if strings.ContainsFunc(cfg.Username, unicode.IsControl) {
		return nil, fmt.Errorf("registry: Username %q holds a control character (a newline read with it from a file?)", cfg.Username)
	}
	a := &authenticator{tenant: cfg.Tenant, username: cfg.Username, authURL: strings.TrimRight(cfg.AuthURL, "/")}
	if a.authURL != "" {
		// Checked here, as URL is: sent as is, one that does not parse
		// failed each login with url.Parse's error, which quotes it
		// whole, password included.
		u, err := url.Parse(a.authURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("registry: AuthURL %q is not an http(s) URL such as %s", redactedURL(a.authURL), AuthURLUS)
		}
		if err := noQuery("AuthURL", a.authURL, u); err != nil {
			return nil, err
		}
	}
	if a.authURL == "" {
		var err error
		if a.authURL, err = regionAuthURL(cfg.Region); err != nil {
			return nil, err
		}
	}
	if a.authURL == "" {
		// Credentials never go to a host the user did not name: without
		// URL, AuthURL or Region there is none.
		if noURL(cfg.URL) {
			return nil, errors.New(`registry: credentials need somewhere to go: give URL (its identity endpoint is used), AuthURL, or Region "us" or "uk" for the hosted identity service`)
		}
		for _, b := range bases {
			a.identity = append(a.identity, identityURL(b))
		}
	}
	a.secret = cmp.Or(cfg.APIKey, cfg.Password)
	var req any
	if cfg.APIKey != "" {
		req = map[string]any{"auth": map[string]any{"RAX-KSKEY:apiKeyCredentials": map[string]string{"username": cfg.Username, "apiKey": cfg.APIKey}}}
	} else {
		req = map[string]any{"auth": map[string]any{"passwordCredentials": map[string]string{"username": cfg.Username, "password": cfg.Password}}}
	}
	var err error
	if a.body, err = json.Marshal(req); err != nil {
		return nil, err
	}
	return a, nil
}

// regionAuthURL is where credentials go when Config.AuthURL is not set
// and Region is: its hosted identity service; "" without Region.
func regionAuthURL(region string) (string, error) {
	switch strings.ToLower(region) {
	case "us":
		return AuthURLUS, nil
	case "uk":
		return AuthURLUK, nil
	case "":
		return "", nil
	}
	return "", fmt.Errorf("registry: Invalid region: %s (use us or uk, or give AuthURL)", region)
}

// identityURL is where credentials go when neither Config.AuthURL nor
// Region is set: the identity endpoint of the registry at base, a base
// URL New checked (same scheme and host; /v1.0 at the end of the path
// becomes /v2.0, a URL without it gets /v2.0).
func identityURL(base string) string {
	u, _ := url.Parse(base)
	prefix, ok := strings.CutSuffix(u.Path, "/v1.0")
	if !ok {
		prefix = ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: prefix + "/v2.0"}).String()
}

// canRenew reports whether a new token can be had after a 401.
func (a *authenticator) canRenew() bool { return !a.static }

// mayRenew reports whether a 401 may make the client log in again now:
// not while renewals are held (holdRenewals).
func (a *authenticator) mayRenew() bool {
	h := a.held.Load()
	return h == 0 || time.Now().UnixNano() >= h
}

// loginsStarted is how many logins have started.
func (a *authenticator) loginsStarted() uint64 { return a.started.Load() }

// issuedAfter reports whether id is the token in use and a login that
// started after the first n got it.
func (a *authenticator) issuedAfter(id string, n uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tok.ID == id && a.tokStarted > n
}

// holdRenewals keeps a 401 from making the client log in again for
// refusedFor (jittered), or until a request succeeds: the API refused a
// token issued after its last 401, and a client that retries (a
// heartbeater, a few times a second) would otherwise log in at each try,
// and spend the user's token issues (the server's: 600 an hour), refused
// for every client of the user then. The token is kept meanwhile; the
// API is asked with it.
func (a *authenticator) holdRenewals() {
	a.held.Store(time.Now().Add(retry.Jitter(refusedFor, 0.2)).UnixNano())
}

// answered notes that the API took a token: renewals are not held.
func (a *authenticator) answered() {
	if a.held.Load() != 0 {
		a.held.Store(0)
	}
}

// token returns a live token, authenticating first if the cached one is
// missing or due for refresh. A refresh that fails while the cached token
// has not expired yet (refreshes come early) returns that token, and the
// next refresh is tried a little later: an identity service's hiccup then
// interrupts nothing.
func (a *authenticator) token(ctx context.Context) (AuthToken, error) {
	a.mu.Lock()
	cached := a.tok
	if a.static || (cached.ID != "" && time.Now().Before(a.refreshAt)) {
		a.mu.Unlock()
		return cached, nil
	}
	refused, until := a.refused, a.refusedUntil
	a.mu.Unlock()
	left := time.Until(cached.Expires)
	usable := cached.ID != "" && !cached.Expires.IsZero() && left > 0
	if refused != nil && time.Now().Before(until) {
		// The credentials were refused a moment ago: not sent again yet
		// (refusedFor). A token that has not expired still works.
		if usable {
			return cached, nil
		}
		return AuthToken{}, refused
	}
	if usable && left > authTimeout {
		// An early refresh: the token still has longer than a login
		// may take. Callers go on with it meanwhile, so that a login
		// that waits on a node that does not answer holds nothing up
		// (the requests fail over by themselves).
		a.flight.join(ctx, authTimeout, func(ctx context.Context) (AuthToken, error) {
			t, err := a.authenticate(ctx)
			if err != nil {
				a.noteRefusal(err)
				a.retryRefresh(cached, err)
			}
			return t, err
		})
		return cached, nil
	}
	t, err := a.flight.do(ctx, authTimeout, a.authenticate)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Cause(ctx)) { // Is: a cause may not be comparable
		// The caller stopped waiting; the login goes on (the flight's
		// own time bounds it) for the calls that follow.
		return t, a.loginUnanswered(err)
	}
	a.noteRefusal(err)
	if err == nil || !usable || ctx.Err() != nil {
		return t, err
	}
	a.retryRefresh(cached, err)
	return cached, nil
}

// loginUnanswered is the error of a caller whose context ended (with
// cause) while it waited for a login: the login's request, as an
// http.Client names a request that its context ended, so that the caller
// learns that the identity service, and which, had not answered, not the
// registry.
func (a *authenticator) loginUnanswered(cause error) error {
	u := a.authURL
	if p := a.sendingTo.Load(); p != nil {
		u = *p
	} else if a.identity != nil {
		u = a.identity[a.client.cur.Load()]
	}
	return fmt.Errorf("registry: authenticate %s: %w", a.username, &url.Error{Op: "Post", URL: redactedURL(u + "/tokens"), Err: cause})
}

// noteRefusal remembers err if it is the identity service's refusal of
// the credentials (401), for refusedFor.
func (a *authenticator) noteRefusal(err error) {
	var e *Error
	if errors.As(err, &e) && e.Identity && errors.Is(err, ErrUnauthorized) {
		a.mu.Lock()
		a.refused, a.refusedUntil = err, time.Now().Add(retry.Jitter(refusedFor, 0.2))
		a.mu.Unlock()
	}
}

// retryRefresh schedules the next try of an early refresh of cached that
// failed with err, if cached is still the token in use: no sooner than
// the identity service's Retry-After (a 429: too many tokens issued to
// the user) while the token lasts.
func (a *authenticator) retryRefresh(cached AuthToken, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if left := time.Until(cached.Expires); a.tok.ID == cached.ID && left > 0 {
		wait := retry.Jitter(min(refreshRetry, left/2), 0.5)
		a.refreshAt = time.Now().Add(max(wait, min(LongestRetryAfter(err), left/2)))
	}
}

// refreshRetry is how soon, at most, a failed early refresh is tried again.
const refreshRetry = 5 * time.Second

// invalidate drops the cached token if it is still id, after the API
// refused it.
func (a *authenticator) invalidate(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.static && a.tok.ID == id {
		a.tok = AuthToken{}
	}
}

// Authenticate returns the token the client uses, authenticating with the
// identity service first if it holds none that is still fresh. Use it to
// check credentials up front; other calls authenticate as needed.
//
// A login is shared by the calls that need it at once, and has 30 s of
// its own. ctx bounds the wait for it (as it does for any call): a call
// whose ctx ends first returns an error that names the login's request
// (`registry: authenticate USER: Post "…/tokens": …`) and matches ctx's
// cause, and the login goes on for the calls that follow.
func (c *Client) Authenticate(ctx context.Context) (AuthToken, error) {
	return c.auth.token(ctx)
}

// keystoneAccess is the part of the Keystone answer the client reads.
type keystoneAccess struct {
	Access struct {
		Token struct {
			ID      string `json:"id"`
			Expires string `json:"expires"`
			Tenant  struct {
				ID flexString `json:"id"`
			} `json:"tenant"`
		} `json:"token"`
		ServiceCatalog []struct {
			Name      string `json:"name"`
			Endpoints []struct {
				TenantID flexString `json:"tenantId"`
			} `json:"endpoints"`
		} `json:"serviceCatalog"`
	} `json:"access"`
}

// flexString decodes a JSON string or number as a string: tenant ids are
// numeric and some identity services send them as numbers.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*s = flexString(n.String())
	return nil
}

// authenticate asks the identity service for a token: at authURL, or at
// the current node's identity endpoint, sent again at the next node's
// when the node fails (as a read is: a login changes nothing a second one
// would not).
func (a *authenticator) authenticate(ctx context.Context) (AuthToken, error) {
	if a.identity == nil {
		return a.authenticateAt(ctx, a.authURL)
	}
	c := a.client
	i := int(c.cur.Load())
	tried := tries{login: a.username}
	for {
		// Each node gets its share of the time a login has, so that one
		// that takes the connection and never answers leaves time for
		// the next.
		actx, cancel := attemptContext(ctx, authTimeout/time.Duration(len(a.identity)))
		c.sending(&tried, i)
		tok, err := a.authenticateAt(actx, a.identity[i])
		i, err = c.failedAt(ctx, actx, i, err, &tried) // before cancel: actx tells how it ended
		cancel()
		if i < 0 {
			return tok, err
		}
	}
}

// authenticateAt asks the identity service at authURL for a token: POST
// {authURL}/tokens (spec §3.1), success being 200 or 203.
func (a *authenticator) authenticateAt(ctx context.Context, authURL string) (AuthToken, error) {
	n := a.started.Add(1)
	a.sendingTo.Store(&authURL)
	u := authURL + "/tokens"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(a.body))
	if err != nil {
		return AuthToken{}, fmt.Errorf("registry: authenticate: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", a.client.userAgent)
	start := time.Now()
	resp, err := a.client.hc.Do(req)
	if err != nil {
		showTransportError(err)
		return AuthToken{}, fmt.Errorf("registry: authenticate %s: %w", a.username, err)
	}
	defer closeBody(resp.Body)
	if e := crossHostRedirect(resp); e != nil {
		return AuthToken{}, e
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNonAuthoritativeInfo {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := newError(resp, data)
		e.Identity = true
		e.hide(a.secret)
		return AuthToken{}, e
	}
	var acc keystoneAccess
	// An answer of one item: a catalog's {} items decode to some 40
	// bytes each, and a page's bound would let one login take gigabytes.
	if err := json.NewDecoder(capped(resp.Body, itemAnswer)).Decode(&acc); err != nil {
		return AuthToken{}, fmt.Errorf("registry: authenticate %s: decode the identity service's answer: %w", a.username, answerError(err))
	}
	tok := AuthToken{ID: acc.Access.Token.ID, Tenant: a.tenant, Expires: parseExpires(acc.Access.Token.Expires)}
	if tok.ID == "" {
		return AuthToken{}, fmt.Errorf("registry: authenticate %s: the identity service's answer holds no access.token.id", a.username)
	}
	if tok.Tenant == "" {
		tok.Tenant = string(acc.Access.Token.Tenant.ID)
	}
	if tok.Tenant == "" {
		// The Node client's source of the tenant (spec §3.1).
		for _, e := range acc.Access.ServiceCatalog {
			if (e.Name == "cloudServers" || e.Name == "cloudServersLegacy") && len(e.Endpoints) > 0 {
				tok.Tenant = string(e.Endpoints[0].TenantID)
				break
			}
		}
	}
	if tok.Tenant == "" {
		return AuthToken{}, fmt.Errorf("registry: authenticate %s: the identity service named no tenant; set Config.Tenant", a.username)
	}
	// Every request carries both, and every error names its URL: an
	// identity service (or one posing as it) must not make them
	// megabytes long.
	if len(tok.ID) > maxTokenID {
		return AuthToken{}, fmt.Errorf("registry: authenticate %s: the identity service's token is %d bytes, more than %d", a.username, len(tok.ID), maxTokenID)
	}
	if len(tok.Tenant) > maxTenant {
		return AuthToken{}, fmt.Errorf("registry: authenticate %s: the identity service's tenant is %d bytes, more than %d; set Config.Tenant", a.username, len(tok.Tenant), maxTenant)
	}
	a.mu.Lock()
	a.tok, a.refreshAt, a.tokStarted = tok, refreshTime(start, tok.Expires), n
	a.mu.Unlock()
	return tok, nil
}

// hide takes secret out of the text of e that the identity service
// chose (type, message, details), in the forms the service may quote it
// in: as sent, and escaped as in the JSON of the login's body.
func (e *Error) hide(secret string) {
	if secret == "" {
		return
	}
	forms := []string{secret}
	if q, err := json.Marshal(secret); err == nil {
		if esc := string(q[1 : len(q)-1]); esc != secret {
			forms = append(forms, esc)
		}
	}
	holds := func(s string) bool {
		return slices.ContainsFunc(forms, func(f string) bool { return strings.Contains(s, f) })
	}
	hidden := func(s string) string {
		for _, f := range forms {
			s = strings.ReplaceAll(s, f, "[credential hidden]")
		}
		return s
	}
	e.Type, e.Message = hidden(e.Type), hidden(e.Message)
	switch d := e.Details.(type) {
	case nil:
	case string:
		e.Details = hidden(d)
	default:
		if raw, err := json.Marshal(d); err != nil || holds(string(raw)) {
			e.Details = "[details hidden: they quote the credential]"
		}
	}
}

// maxTokenID and maxTenant bound the token and tenant an identity
// service gives: Keystone's longest tokens (PKI) are some 8 kB, tenant ids
// numbers or 32-digit hex.
const (
	maxTokenID = 16 << 10
	maxTenant  = 256
)

// refreshTime is when a token obtained at start should be replaced: a tenth
// of its life (at most maxRefreshEarly) before it expires, or after
// defaultTokenLife when its expiry is unknown or already past by our clock.
func refreshTime(start, expires time.Time) time.Time {
	life := expires.Sub(start)
	if expires.IsZero() || life <= 0 {
		return start.Add(defaultTokenLife)
	}
	return expires.Add(-min(life/10, maxRefreshEarly))
}

// parseExpires reads Keystone's expires, e.g. "2013-05-21T12:00:00.000-05:00"
// (spec §3.1); zero if it cannot.
func parseExpires(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000-0700", "2006-01-02T15:04:05-0700", "2006-01-02T15:04:05.000Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}
