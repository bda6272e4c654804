package registry

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultURL is the API endpoint the official clients use (spec §11.1).
const DefaultURL = "https://dfw.registry.api.rackspacecloud.com/v1.0"

// Config configures a Client. Give either a static Token and its Tenant, or
// Keystone credentials: Username with APIKey or Password.
// Its TOML tags name the keys of a config file's table that holds it
// (svcreg template's [registry]); the HTTP client and user agent are not
// configuration a file gives.
type Config struct {
	// URL is the API base URL, ending in /v1.0; DefaultURL if empty. A
	// URL without a path (http://host:8420) means its /v1.0. Requests go
	// to URL + "/" + tenant + path (spec §11.1, Node).
	//
	// URL may list the base URLs of several registry nodes that serve one
	// registry (svcreg server over etcd), separated by commas:
	// "http://10.0.0.1:8420,http://10.0.0.2:8420". The client sends every
	// request to one of them, the first to begin with, and moves to the
	// next (round robin) when a request to it gets no answer (refused,
	// reset, a TLS failure, an answer cut short, the request's 30 s — for
	// a long-poll, its wait, a sixteenth of it and 10 s — or a
	// Heartbeater's attempt running out)
	// or a 502, 503 or 504; later calls, and the retries of Heartbeaters
	// and Feeds, go there. It remembers a node's failure for 10 s, twice
	// as long for each further failure of a request sent once that had
	// passed (up to 160 s), until the node next answers, and moves past
	// the nodes it remembers failing, or, when it remembers every other
	// one failing, to the one whose memory runs out first; a call that
	// another node answered makes that one the current node, if the
	// current one failed. The call that failed is sent to the next URL
	// at once if that is safe: a read, or a change that never left the
	// client; each URL is tried once per call (those remembered failing
	// last; and once more after a 401 and a new login). When each fails,
	// the call's error names each URL with its failure and matches
	// ErrAllNodesFailed and the error of the URL tried last. A change
	// whose outcome is unknown is not sent again (the caller decides, as
	// with one URL), nor is a call whose context the caller cancelled or
	// whose deadline passed, which moves nothing.
	URL string `toml:"url"`

	// Token is a static API token; it is never refreshed, and a 401 is
	// returned as is. It needs Tenant.
	Token string `toml:"token"`
	// Tenant is the account's tenant id. With credentials it overrides the
	// tenant the identity service names.
	Tenant string `toml:"tenant"`

	// Username and APIKey (RAX-KSKEY:apiKeyCredentials) or Password
	// (passwordCredentials) authenticate with the Keystone v2 identity
	// service (spec §3.1). APIKey wins if both are set. Credentials it
	// refused (401) are not sent again for 24-30 s: calls meanwhile get
	// that refusal (ErrUnauthorized) back.
	Username string `toml:"username"`
	APIKey   string `toml:"api_key"`
	Password string `toml:"password"`
	// AuthURL is the identity service's base URL, ending in /v2.0. If
	// empty, credentials go to the identity endpoint of the registry at
	// URL (same scheme and host, /v2.0): with several URLs, that of the
	// one the client uses, moving on as requests do. Unless Region asks
	// for a hosted one. They never go to a host the configuration does not name: with
	// neither URL, AuthURL nor Region, New fails.
	AuthURL string `toml:"auth_url"`
	// Region asks for the Rackspace-hosted identity service of a region:
	// "us" or "uk". AuthURL overrides it.
	Region string `toml:"region"`

	// CACert is the path of a PEM file of CA certificates (a bundle; other
	// PEM blocks are skipped) that the Client trusts for HTTPS to the
	// registry and to the identity service, for a registry whose
	// certificate a private or self-signed CA issued. They replace the
	// system's roots for this Client, as curl's --cacert does: a CA that
	// is not in the file is not trusted, so an identity service with a
	// public certificate (Region) needs the system's bundle appended to
	// the file. Empty: the system's roots (which the process-wide
	// SSL_CERT_FILE and SSL_CERT_DIR variables can replace). New reads
	// the file; to pick up a renewed CA, make a new Client.
	CACert string `toml:"ca_cert"`

	// HTTPClient sends the requests. If nil, the Client makes its own with
	// a transport of its own that keeps connections alive, so heartbeats
	// and event polls reuse one connection. Its Timeout must be zero or
	// longer than the long-polls you make. The Client uses a copy, which
	// follows redirects only on the host of the request, unless its
	// CheckRedirect is set (then that decides). With HTTPClient, CACert
	// must be empty (New fails otherwise): the CAs are the business of
	// its transport, whose TLSClientConfig.RootCAs LoadCACert fills.
	HTTPClient *http.Client `toml:"-"`
	// UserAgent replaces the default "svcreg/<version>".
	UserAgent string `toml:"-"`
	// MaxListItems bounds one list that follows next_marker from page to
	// page (ListServices, ListConfig, ListEvents, a ServicesCache's
	// fetch): past it, the list ends with an error rather than hold what
	// a registry that pages without end sends. Each page counts as at
	// least one item. DefaultMaxListItems if 0.
	MaxListItems int `toml:"max_list_items"`
	// OnFailover, if set, is told when the client moves from one of URL's
	// URLs to the next: from and to as URL gives them (without any
	// password), and the error of the request that failed. It is called
	// once per move, from the goroutine of that request, so it should be
	// quick and safe for concurrent use.
	OnFailover func(from, to string, err error) `toml:"-"`
}

// plainConfig is a Config without its methods, for formatting.
type plainConfig Config

// redacted is c with its secrets (Token, APIKey, Password) replaced, where
// set, by a mark that says so.
func (c Config) redacted() plainConfig {
	const mark = "[redacted]"
	for _, f := range []*string{&c.Token, &c.APIKey, &c.Password} {
		if *f != "" {
			*f = mark
		}
	}
	c.URL, c.AuthURL = redactedURLs(c.URL), redactedURL(c.AuthURL)
	return plainConfig(c)
}

// String formats c for %v and %+v with its Token, APIKey and Password
// (and any password in its URLs) left out, so that a Config that reaches
// a log or an error message does not carry the account's credentials.
func (c Config) String() string { return fmt.Sprintf("%+v", c.redacted()) }

// GoString formats c for %#v, leaving out its secrets as String does.
func (c Config) GoString() string {
	return "registry.Config" + strings.TrimPrefix(fmt.Sprintf("%#v", c.redacted()), "registry.plainConfig")
}

// LogValue is c as log/slog shows it, without its secrets: a JSON
// handler would otherwise encode every field, APIKey and Password
// included.
func (c Config) LogValue() slog.Value {
	r := c.redacted()
	attrs := []slog.Attr{slog.String("url", r.URL)}
	for _, a := range []struct{ key, val string }{
		{"token", r.Token}, {"tenant", r.Tenant}, {"username", r.Username}, {"api_key", r.APIKey},
		{"password", r.Password}, {"auth_url", r.AuthURL}, {"region", r.Region}, {"ca_cert", r.CACert}, {"user_agent", r.UserAgent},
	} {
		if a.val != "" {
			attrs = append(attrs, slog.String(a.key, a.val))
		}
	}
	if r.MaxListItems != 0 {
		attrs = append(attrs, slog.Int("max_list_items", r.MaxListItems))
	}
	return slog.GroupValue(attrs...)
}

// DefaultMaxListItems is the default Config.MaxListItems: 500 times the
// services an account holds by default (200; svcreg server
// --service-limit), 100 times its configuration values (1000;
// --config-limit) and 10 times the events it keeps (10000; --max-events),
// which is some hundreds of megabytes of the largest services.
const DefaultMaxListItems = 100000

// MaxListItems is Config.MaxListItems, defaulted: the most values one list
// holds. A Watcher bounds its snapshot by it too.
func (c *Client) MaxListItems() int { return c.maxListItems }

// MaxListBytes is the most bytes of answers one list takes: 10 KiB for
// each of MaxListItems values (1 GiB by default). A Watcher bounds the
// registry text its snapshot holds by it too.
func (c *Client) MaxListBytes() int64 { return listBytes(c.maxListItems) }

// Client calls the Service Registry API. It is safe for concurrent use.
// Every method takes a context first; list methods return iterators that
// follow next_marker through every page; errors from the registry are
// *Error values that match the sentinel errors (ErrNotFound, …).
type Client struct {
	// bases are the base URLs of Config.URL, one per registry node, and
	// shown the same as the Config gives them, redacted, for OnFailover;
	// cur is the index of the one requests go to (see failover). With
	// several, marks holds each one's memory of its failures (nil if it
	// has not failed since it last answered; see markFailed), on clock,
	// the time since New.
	bases      []string
	shown      []string
	cur        atomic.Uint32
	onFailover func(from, to string, err error)
	marks      []atomic.Pointer[failMark]
	clock      func() time.Duration

	hc        *http.Client
	transport *http.Transport // ours, nil if the caller gave HTTPClient
	userAgent string
	auth      *authenticator
	// maxListItems is Config.MaxListItems, defaulted.
	maxListItems int
}

// New returns a Client. It checks the configuration but sends nothing;
// Authenticate checks the credentials.
func New(cfg Config) (*Client, error) {
	bases, shown, err := baseURLs(cfg.URL)
	if err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(cfg, bases)
	if err != nil {
		return nil, err
	}
	var roots *x509.CertPool
	if cfg.CACert != "" {
		if cfg.HTTPClient != nil {
			// Ignored, it would leave the registry's certificate
			// unverifiable without a word about why.
			return nil, fmt.Errorf("registry: CACert (%s) and HTTPClient are both set: give the CAs to HTTPClient's transport (see LoadCACert)", cfg.CACert)
		}
		if roots, err = LoadCACert(cfg.CACert); err != nil {
			return nil, err
		}
	}
	c := &Client{bases: bases, shown: shown, onFailover: cfg.OnFailover, hc: cfg.HTTPClient, userAgent: cfg.UserAgent, auth: auth, maxListItems: cfg.MaxListItems}
	if len(bases) > 1 {
		c.marks = make([]atomic.Pointer[failMark], len(bases))
		born := time.Now()
		c.clock = func() time.Duration { return time.Since(born) }
	}
	if c.maxListItems <= 0 {
		c.maxListItems = DefaultMaxListItems
	}
	if c.userAgent == "" {
		c.userAgent = "svcreg/" + moduleVersion()
	}
	if c.hc == nil {
		c.transport = newTransport()
		if roots != nil {
			// The clone's own copy, if DefaultTransport has one.
			if c.transport.TLSClientConfig == nil {
				c.transport.TLSClientConfig = &tls.Config{}
			}
			c.transport.TLSClientConfig.RootCAs = roots
		}
		c.hc = &http.Client{Transport: c.transport}
	}
	if c.hc.CheckRedirect == nil {
		hc := *c.hc // the caller's, with its transport, jar and timeout
		hc.CheckRedirect = sameHostRedirect
		c.hc = &hc
	}
	auth.client = c
	return c, nil
}

// MaxResponseHeaderBytes bounds the headers of a registry answer the
// client reads (Go's default is 10 MiB): the registry's own are a few
// hundred bytes. A Transport of the caller's own should set it too.
const MaxResponseHeaderBytes = 64 << 10

// newTransport is DefaultTransport's settings with room for the idle
// connections one client keeps to the registry: heartbeaters, a watcher's
// long-poll, and ordinary calls side by side.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxResponseHeaderBytes = MaxResponseHeaderBytes
	t.MaxIdleConns = 100
	t.MaxIdleConnsPerHost = 32
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// LoadCACert reads a PEM file of CA certificates, as New does with
// Config.CACert, and returns them as a pool for a tls.Config's RootCAs:
// for a caller that gives New an HTTPClient of its own. Blocks other than
// CERTIFICATE (a key in the same file) are skipped. Its errors name the
// file: one that cannot be read, a certificate that does not parse, a
// file without any (a DER file, say, which openssl x509 -inform der
// turns into PEM).
func LoadCACert(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("registry: read the CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		n++
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("registry: CA certificate %d in %s: %w", n, file, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, fmt.Errorf("registry: %s holds no PEM certificate (-----BEGIN CERTIFICATE-----): give a PEM file of CA certificates", file)
	}
	return pool, nil
}

// Close releases the idle connections of the transport the Client made
// for itself; one given in Config.HTTPClient is the caller's, which Close
// leaves alone (its CloseIdleConnections is the caller's to call). Calls
// made afterwards still work, on new connections. It stops nothing:
// Heartbeaters and Feeds stop with their contexts (or Stop). It always
// returns nil.
func (c *Client) Close() error {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
	return nil
}

// moduleVersion is the version of this module in the running binary.
func moduleVersion() string {
	const path = "github.com/svcreg/svcreg"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == path && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == path && d.Version != "" {
				return d.Version
			}
		}
	}
	return "devel"
}

// call is one API request.
type call struct {
	method string
	path   string // after the tenant, e.g. "/services/web1"
	query  url.Values
	body   any // encoded as JSON when not nil
	// wait is how long the registry may hold the request (a long-poll):
	// a node that is one of several has pollTime(wait), not nodeTimeout.
	wait time.Duration
	// max, if not 0, bounds the answer below maxAnswer: one item's answer
	// (a token, a service) is small, and a client such as the wrapper
	// keeps and sends back what it decodes.
	max int64
}

// do sends a request to the current node and decodes a 2xx answer's body
// into out (if not nil and the body is not empty). A 401 makes it
// authenticate again and send the request once more (spec §11.1). A
// failure of the node sends it to the next, unless it is a change that
// may have been applied (see Config.URL). It returns the answer's
// headers. The body is always drained and closed, so the connection is
// reused.
func (c *Client) do(ctx context.Context, r call, out any) (http.Header, error) {
	if dotSegment(r.path) {
		// "services/../configuration/db": a proxy or server that resolves
		// dot segments would act on another path.
		return nil, fmt.Errorf("registry: %s %s: an id with a . or .. path segment is not sent (no valid id has one; it would reach another path)", r.method, ShownText(r.path))
	}
	var body []byte
	if r.body != nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("registry: encode %s %s body: %w", r.method, r.path, err)
		}
	}
	renewed := false
	var loginsAt401 uint64 // logins started when the API refused a token
	next := -1             // the node to send to after a failure; -1: the current one
	var tried tries
	for {
		tok, err := c.auth.token(ctx)
		if err != nil {
			return nil, err
		}
		// After the token: authenticating may have moved the current node.
		i := next
		if i < 0 {
			i = int(c.cur.Load())
		}
		u := c.bases[i] + "/" + url.PathEscape(tok.Tenant) + r.path
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if len(c.bases) > 1 {
			limit := nodeTimeout
			if r.wait > 0 {
				limit = c.pollTime(r.wait)
			}
			// An attempt of the client's own (a heartbeat's, a Feed's
			// poll) may end sooner already; its cause is this one's.
			if end, ok := ctx.Deadline(); !ok || time.Until(end) > limit {
				actx, cancel = attemptContext(ctx, limit)
			}
		}
		c.sending(&tried, i)
		h, err := c.send(actx, r.method, u, tok.ID, body, r.max, out)
		var e *Error
		if err == nil {
			c.auth.answered()
		} else if errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized && c.auth.canRenew() {
			if !renewed && c.auth.mayRenew() {
				cancel()
				renewed, next = true, i
				loginsAt401 = c.auth.loginsStarted()
				c.auth.invalidate(tok.ID)
				continue
			}
			if renewed && c.auth.issuedAfter(tok.ID, loginsAt401) {
				// The API refuses a token issued after the 401 too (a
				// wrong Tenant, say): logging in again would only spend
				// the user's token issues.
				c.auth.holdRenewals()
			}
		}
		next, err = c.failedAt(ctx, actx, i, err, &tried) // before cancel: actx tells how it ended
		cancel()
		if next < 0 || errors.Is(err, ErrOutcomeUnknown) {
			return h, err
		}
	}
}

// send makes one HTTP request.
func (c *Client) send(ctx context.Context, method, u, token string, body []byte, limit int64, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("registry: %s %s: %w", method, redactedURL(u), err)
	}
	// spec §11.1 (Node): these headers on every request.
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	change := method != http.MethodGet
	var wrote atomic.Bool
	if change {
		// Whether a change that got no answer was sent (ErrOutcomeUnknown).
		// The transport may send it again on another connection when the
		// first broke before anything left: each connection starts over.
		req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn:      func(httptrace.GotConnInfo) { wrote.Store(false) },
			WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
		}))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		showTransportError(err)
		if wrote.Load() {
			return nil, &outcomeUnknown{fmt.Errorf("registry: %w", err)}
		}
		return nil, fmt.Errorf("registry: %w", err)
	}
	defer closeBody(resp.Body)
	if resp.Close {
		// The transport takes Connection out of the header and sets
		// Close; callers read the header (see ListEventsPage).
		resp.Header.Set("Connection", "close")
	}
	if e := crossHostRedirect(resp); e != nil {
		return resp.Header, e
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if change && resp.StatusCode >= 500 {
			// The registry may have committed the change before failing.
			return resp.Header, &outcomeUnknown{newError(resp, data)}
		}
		return resp.Header, newError(resp, data)
	}
	if out == nil && change && resp.StatusCode != http.StatusNoContent {
		// A change answers 204 No Content. Another success with a body
		// (a proxy's maintenance page, say) is not the registry's answer:
		// whether the change was made is not known.
		if n, _ := io.ReadFull(resp.Body, make([]byte, 1)); n > 0 {
			return resp.Header, &outcomeUnknown{fmt.Errorf("registry: %s %s: %w", method, shownURL(req.URL), &notTheAnswerError{resp.StatusCode, resp.Header.Get("Content-Type")})}
		}
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		dec := json.NewDecoder(capped(resp.Body, cmp.Or(limit, maxAnswer)))
		if s, ok := out.(streamDecoder); ok {
			err = s.decodeStream(dec)
		} else {
			err = dec.Decode(out)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			err = answerError(err)
			var ne net.Error
			if method == http.MethodGet && (errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)) {
				// The node went away while it answered: a read may be
				// sent to another (a change was applied: not that).
				err = fmt.Errorf("%w: %w", errBodyCut, err)
			}
			err = fmt.Errorf("registry: %s %s: decode answer: %w", method, shownURL(req.URL), err)
			if change {
				// The registry made the change (2xx), and what it
				// answered (a create's token) is lost: not to be sent
				// again, and the caller may have made what it finds.
				return resp.Header, &outcomeUnknown{err}
			}
			return resp.Header, err
		}
	}
	return resp.Header, nil
}

// notTheAnswerError is a successful answer to a change that should have
// had no body (204) and had one.
type notTheAnswerError struct {
	status      int
	contentType string
}

func (e *notTheAnswerError) Error() string {
	return fmt.Sprintf("answered %d with a body (Content-Type %s), where the registry answers 204 with none: not the registry's answer (a proxy's page?)", e.status, quotedText(e.contentType))
}

// itemAnswer bounds an answer of one item: a token, the identity
// service's (a token and its catalog, some kilobytes), a service, a
// configuration value (a service's metadata is at most some kilobytes),
// the account's limits.
const itemAnswer = 1 << 20

// streamDecoder is an answer that decodes itself as it is read, such as a
// list page, which stops at the values it may hold rather than decode
// whatever a registry sends. An empty body is io.EOF, as for Decode.
type streamDecoder interface {
	decodeStream(dec *json.Decoder) error
}

// maxAnswer bounds an answer the client decodes: a page of the largest
// services the registry keeps is a few megabytes. A registry (or something
// in front of it) that sends more cannot run the client out of memory.
const maxAnswer = 64 << 20

// errAnswerTooLarge is an answer that went past its bound.
var errAnswerTooLarge = errors.New("answer larger than the client takes")

// capped reads r up to n bytes, then fails with errAnswerTooLarge.
func capped(r io.Reader, n int64) io.Reader { return &cappedReader{r, n, n} }

type cappedReader struct {
	r           io.Reader
	limit, left int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("%w (%d bytes)", errAnswerTooLarge, c.limit)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// RedirectError is an answer that redirects to another host, which the
// client does not follow: the token and credentials go only to the host
// configured. Nothing was applied. Temporary takes it for a failure that
// may pass (a load balancer may redirect to a maintenance page for a
// while), so a watch or heartbeat goes on trying, with its backoff.
type RedirectError struct {
	Method, URL string
	StatusCode  int
	Location    string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("registry: %s %s: %d redirect to %s: not following a redirect to another host (credentials go only to the host configured)",
		e.Method, e.URL, e.StatusCode, strconv.QuoteToASCII(e.Location))
}

// crossHostRedirect is the RedirectError of an answer that redirects to
// another host (sameHostRedirect left it unfollowed), or nil.
func crossHostRedirect(resp *http.Response) *RedirectError {
	if resp.StatusCode < 300 || resp.StatusCode > 399 || resp.Request == nil {
		return nil
	}
	loc := resp.Header.Get("Location")
	to, err := resp.Request.URL.Parse(loc)
	if loc == "" || err != nil || sameHost(resp.Request.URL, to) {
		return nil
	}
	// The registry chooses the Location, up to the header limit: kept
	// cut, as registry text in an error is.
	return &RedirectError{Method: resp.Request.Method, URL: shownURL(resp.Request.URL), StatusCode: resp.StatusCode, Location: cutText(loc)}
}

// sameHost reports whether a request may go from from to to with the
// client's credentials: the same host, and the same scheme or http to
// https.
func sameHost(from, to *url.URL) bool {
	return to.Host == from.Host && (to.Scheme == from.Scheme || from.Scheme == "http" && to.Scheme == "https")
}

// sameHostRedirect follows a redirect only to the host the request went
// to: the token and credentials travel in headers and bodies that Go
// would otherwise send to whatever host a redirect names. A redirect
// elsewhere is the answer (send reports it as a refusal: nothing was
// applied).
func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if !sameHost(via[0].URL, req.URL) {
		return http.ErrUseLastResponse
	}
	return nil
}

// closeBody reads what is left of a body, so that the connection can carry
// the next request, and closes it. A body with more than 256 KiB left is
// cheaper to drop with its connection.
func closeBody(b io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(b, 256<<10))
	b.Close()
}

// dotSegment reports whether path has a "." or ".." segment, escaped
// ("..%2F" in a service id) or not: a proxy may resolve either.
func dotSegment(path string) bool {
	if !strings.Contains(path, ".") {
		return false // every call's path: most have no dot
	}
	if p, err := url.PathUnescape(path); err == nil {
		path = p
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// pathEscapeID escapes each "/"-separated segment of id and keeps the
// slashes, so that a namespaced configuration id "/a/b" stays "/a/b" and
// "/configuration/" + id gives the "//" form the API expects (spec §7.8).
func pathEscapeID(id string) string {
	parts := strings.Split(id, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
