package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// noURL reports whether a Config.URL names no registry (DefaultURL is
// then used, and credentials have nowhere to go unless AuthURL or Region
// says).
func noURL(list string) bool { return strings.TrimRight(list, "/") == "" }

// URLs returns the URLs that URL lists (one, or several separated by
// commas), as given, without the spaces around them; none if URL is
// empty. A comma splits only where another URL (scheme://) follows.
func (c Config) URLs() []string {
	if c.URL == "" {
		return nil
	}
	return splitURLs(c.URL)
}

// PublicURL is a Config.URL without the user information, query or
// fragment of its URLs, which can hold credentials (a password the client
// sends as Basic auth, an x-auth-token), split as the client splits the
// list; a URL that does not parse is left out as "".
func PublicURL(list string) string {
	urls := Config{URL: list}.URLs()
	for i, s := range urls {
		p, err := url.Parse(s)
		if err != nil {
			urls[i] = ""
			continue
		}
		p.User, p.RawQuery, p.ForceQuery, p.Fragment, p.RawFragment = nil, "", false, "", ""
		urls[i] = p.String()
	}
	return strings.Join(urls, ",")
}

// splitURLs splits a Config.URL into its URLs, with the spaces around
// each dropped. Only a comma followed by another URL (after spaces and
// commas: scheme://) or by nothing splits, or one right after a split (an
// empty URL, which baseURLs refuses): a comma inside a URL, in
// its password, path or query (where RFC 3986 allows it), does not, so
// that such a URL given alone means what it always did, and a password
// in it is never cut apart.
func splitURLs(list string) []string {
	var urls []string
	start := 0
	for i := 0; i < len(list); i++ {
		if list[i] != ',' {
			continue
		}
		rest := strings.TrimLeft(list[i+1:], " \t,")
		if startsURL(rest) || rest == "" || strings.TrimSpace(list[start:i]) == "" {
			urls = append(urls, strings.TrimSpace(list[start:i]))
			start = i + 1
		}
	}
	return append(urls, strings.TrimSpace(list[start:]))
}

// startsURL reports whether s starts with a scheme and "://".
func startsURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return false
	}
	for i, r := range scheme {
		letter := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
		if !letter && (i == 0 || !('0' <= r && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

// redactedURLs is a Config.URL as an error or a log may show it: each of
// its URLs as shownElement shows it.
func redactedURLs(list string) string {
	urls := splitURLs(list)
	for i, u := range urls {
		urls[i] = shownElement(u)
	}
	return strings.Join(urls, ",")
}

// shownElement is one URL of a Config.URL as errors and logs show it:
// without its password (redactedURL), and only its scheme if it does not
// parse, since it may then be a piece of a password that held a comma
// and scheme://, which a URL writes percent-encoded.
func shownElement(s string) string {
	if _, err := url.Parse(s); err != nil {
		if scheme, _, ok := strings.Cut(s, "://"); ok && startsURL(s) {
			return scheme + "://…"
		}
		return "…"
	}
	return redactedURL(s)
}

// baseURLs returns the base URLs of a Config.URL, each checked and
// normalised (a URL without a path means its /v1.0), and each as the
// configuration gives it, redacted, to show; DefaultURL if it names none.
// An empty or bad element is an error that names it.
func baseURLs(list string) (bases, shown []string, err error) {
	if noURL(list) {
		return []string{DefaultURL}, []string{DefaultURL}, nil
	}
	urls := splitURLs(list)
	for i, s := range urls {
		base := strings.TrimRight(s, "/")
		u, err := url.Parse(base)
		if err == nil {
			if err := noQuery("URL", base, u); err != nil {
				return nil, nil, err
			}
		}
		if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
			if u.Path == "" {
				base += "/v1.0"
			}
			bases, shown = append(bases, base), append(shown, shownElement(s))
			continue
		}
		switch {
		case len(urls) == 1:
			return nil, nil, fmt.Errorf("registry: URL %q is not an http(s) URL such as %s", redactedURL(list), DefaultURL)
		case s == "":
			return nil, nil, fmt.Errorf("registry: URL %d of %d in %q is empty: separate the URLs with single commas", i+1, len(urls), redactedURLs(list))
		}
		return nil, nil, fmt.Errorf("registry: URL %d of %d, %q, is not an http(s) URL such as %s", i+1, len(urls), shownElement(s), DefaultURL)
	}
	return bases, shown, nil
}

// noQuery refuses a base URL (parsed as u; the setting name names it)
// with a query string or a fragment, shown without them (PublicURL).
// Paths are appended to a base: a query would end up in the middle of
// each request's URL, and in every error that quotes one (a token there,
// such as ?x-auth-token=, with it).
func noQuery(name, base string, u *url.URL) error {
	if u.RawQuery == "" && !u.ForceQuery && !strings.Contains(base, "#") {
		return nil
	}
	return fmt.Errorf("registry: %s %s has a query string or fragment: give the base URL without one (such as %s; credentials go in their own settings)", name, PublicURL(base), DefaultURL)
}

// URL returns the registry URL the client sends its requests to now, as
// Config.URL gives it, without its password: with several, the one it
// moved to last.
func (c *Client) URL() string { return c.shown[c.cur.Load()] }

// errAttemptTimeout is the cause of the deadline the client puts on one
// attempt of its own (a heartbeat, a long-poll, a request to one of
// several nodes, a login): one that passes says the node did not answer
// in time. A caller's own deadline says nothing of the node.
var errAttemptTimeout = errors.New("registry: no answer within the attempt's time")

// attemptContext bounds one attempt by d, as one that fails over when it
// runs out (errAttemptTimeout).
func attemptContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, errAttemptTimeout)
}

// nodeTimeout bounds one request to one of several nodes (a long-poll:
// pollTime): a node that takes connections and never answers is left for
// the next one then. With one URL, only the caller's context bounds a
// request, as ever.
const nodeTimeout = 30 * time.Second

// maxNodesWait is the longest a Feed's long-poll waits with several URLs.
const maxNodesWait = 20 * time.Second

// pollTime bounds a long-poll that asks the registry to wait wait: the
// wait, the registry's jitter on it (up to a sixteenth) and a margin, 30 s
// with one URL (a request that outlives it is lost), 10 s with several (a
// node that froze while it held the poll is left for the next sooner; a
// read sent again costs little).
func (c *Client) pollTime(wait time.Duration) time.Duration {
	if len(c.bases) > 1 {
		return wait + wait/16 + 10*time.Second
	}
	return wait + 30*time.Second
}

// failedAt handles the failure err of a request that a call under ctx sent
// to node i (Client.bases[i]) under actx (ctx, or an attempt's context
// within it). When err says the node failed (see failover), the current
// node moves on from i, and failedAt returns the node to send the request
// to next: the current one, or another the call has not tried, those that
// have not failed recently first (see pickNode). next is -1 when the
// request should not be sent again: the node did not fail, ctx has ended,
// or the call has tried every node; err is then the call's error: err, or,
// when every node failed, a *nodesError with each one's failure. t records
// the nodes the call has tried.
func (c *Client) failedAt(ctx, actx context.Context, i int, err error, t *tries) (next int, _ error) {
	if len(c.bases) == 1 {
		return -1, err
	}
	if !c.failover(actx, i, err, t.sent) {
		var e *Error
		if len(t.failed) > 0 && (err == nil || errors.As(err, &e) && !errors.Is(err, ErrOutcomeUnknown)) {
			// Node i answered, with a fault of the registry's own if
			// not a success: it works, which the failed ones did not.
			c.adopt(i, t.failed[len(t.failed)-1].err)
		}
		return -1, err
	}
	t.failed = append(t.failed, nodeFailure{node: i, err: err, timedOut: errors.Is(context.Cause(actx), errAttemptTimeout)})
	next = -1
	if ctx.Err() == nil {
		next = c.pickNode(int(c.cur.Load()), t.tried, c.clock())
	}
	if next < 0 && len(t.failed) == len(c.bases) {
		return -1, &nodesError{login: t.login, shown: c.shown, failed: t.failed}
	}
	return next, err
}

// sending records in t, before a request of t's call is sent to node i,
// the mark node i has then, and when: an answer clears only that mark, and
// a failure raises its streak only if the request was sent after it had
// run out (see failover).
func (c *Client) sending(t *tries, i int) {
	if c.marks != nil {
		t.sent = sentTo{mark: c.marks[i].Load(), at: c.clock()}
	}
}

// sentTo is the mark a request's node had when the request was sent, and
// when that was (Client.clock).
type sentTo struct {
	mark *failMark
	at   time.Duration
}

// adopt makes node i, which just answered a call that other nodes failed,
// the current one if the current one failed recently: later calls go to
// the node known to answer rather than to one known to fail.
func (c *Client) adopt(i int, err error) {
	cur := c.cur.Load()
	if int(cur) == i {
		return
	}
	if m := c.marks[cur].Load(); m == nil || c.clock() >= m.until {
		return
	}
	if c.cur.CompareAndSwap(cur, uint32(i)) && c.onFailover != nil {
		c.onFailover(c.shown[cur], c.shown[i], err)
	}
}

// tries records the nodes a call has tried and how each failed.
type tries struct {
	// login is the username a login authenticates, which the login's
	// error names when every node failed, as it does with one node.
	login  string
	failed []nodeFailure // in the order the call tried them
	// sent is the mark of the node the call's request went to last, as
	// it was when the request was sent, and when (see sending).
	sent sentTo
}

// tried reports whether the call has tried node i.
func (t *tries) tried(i int) bool {
	for _, f := range t.failed {
		if f.node == i {
			return true
		}
	}
	return false
}

// nodeFailure is how a request to a node failed.
type nodeFailure struct {
	node int
	err  error
	// timedOut says the attempt's own time ran out (errAttemptTimeout),
	// which err, a context's "deadline exceeded", does not.
	timedOut bool
}

// fault is what failed at f's node, as a nodesError shows it after the
// node's URL: without the "registry: " and the request that the client's
// errors start with, which that URL stands for, and with a failed
// answer's transaction id.
func (f nodeFailure) fault() string {
	var s string
	var e *Error
	var ue *url.Error
	switch {
	case f.timedOut:
		s = strings.TrimPrefix(errAttemptTimeout.Error(), "registry: ")
	case errors.As(f.err, &e):
		s = e.fault()
		if e.StatusCode >= 500 && e.TxnID != "" {
			// What to quote to the registry's operators about it, as
			// the CLI shows for one node's failure.
			s += " (txnId " + ShownText(e.TxnID) + ")"
		}
	case errors.As(f.err, &ue):
		s = ue.Err.Error()
	default:
		s = strings.TrimPrefix(f.err.Error(), "registry: ")
	}
	if errors.Is(f.err, ErrOutcomeUnknown) {
		s += " (the change may have been made)"
	}
	return s
}

// nodesError is the error of a call that tried each of several nodes, all
// of which failed: it names each node, as Config.URL does but without a
// password, with its failure, in the order the call tried them. It
// matches ErrAllNodesFailed, and the error of the node tried last.
type nodesError struct {
	login  string   // see tries
	shown  []string // Client.shown
	failed []nodeFailure
}

func (e *nodesError) Error() string {
	var b strings.Builder
	b.WriteString("registry: ")
	if e.login != "" {
		b.WriteString("authenticate ")
		b.WriteString(e.login)
		b.WriteString(": ")
	}
	b.WriteString("every node failed")
	for k, f := range e.failed {
		if k == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(e.shown[f.node])
		b.WriteString(": ")
		b.WriteString(f.fault())
	}
	return b.String()
}

func (e *nodesError) Is(target error) bool { return target == ErrAllNodesFailed }

// Unwrap returns the error of the node the call tried last, so that
// errors.Is and errors.As (Temporary, RetryAfter, ErrOutcomeUnknown) tell
// what the call's last request got, as for a call to one node: not, say,
// the Retry-After of a node the call left for another.
func (e *nodesError) Unwrap() error { return e.failed[len(e.failed)-1].err }

// failover reports whether err, the failure of a request sent to node i
// under ctx, says that the node failed, and then marks the node failed
// (see markFailed), moves the current node from i to the next one, round
// robin, that has not failed recently (see pickNode), and tells
// OnFailover. Requests that fail at node i together move it once: the
// move is a compare-and-swap from i, so that none of them skips a node
// another has just moved to. An answer that says the node works (err nil,
// or a fault of the registry's own) clears its mark. With one URL there
// is nowhere to move and nothing fails over.
func (c *Client) failover(ctx context.Context, i int, err error, sent sentTo) bool {
	if len(c.bases) == 1 {
		return false
	}
	if err == nil || !nodeFailed(ctx, err) {
		// Written only when set, not by every request, and only the mark
		// the request saw when it was sent: one set since is a failure
		// newer than the request. The caller's own cancellation says
		// nothing of the node.
		if sent.mark != nil && (err == nil || ctx.Err() == nil) {
			c.marks[i].CompareAndSwap(sent.mark, nil)
		}
		return false
	}
	now := c.clock()
	c.markFailed(i, now, sent.at)
	if c.cur.Load() != uint32(i) {
		return true // another request has moved it already
	}
	next := c.pickNode(i+1, func(j int) bool { return j == i }, now)
	if c.cur.CompareAndSwap(uint32(i), uint32(next)) && c.onFailover != nil {
		c.onFailover(c.shown[i], c.shown[next], err)
	}
	return true
}

// failMark is a node's memory of its failures since it last answered.
type failMark struct {
	// until is when the node stops counting as recently failed, on
	// Client.clock: its last failure's time and memory.
	until time.Duration
	// streak counts the node's failures since it last answered, but only
	// those of requests sent after the memory of the one before had run
	// out: the requests that fail together at a node, or one after
	// another while it is down (those in flight at a node that froze time
	// out over up to nodeTimeout), are one failure.
	streak int
}

// A node that failed counts as recently failed for failMemory after its
// last failure, twice as long for each further failure of its streak, up
// to maxFailMemory; an answer from it clears that. 10 s outlasts several
// retries of a Heartbeater (2 s apart at most, by default) and the first
// ones of a Feed, which would otherwise try the dead nodes again on each
// move, and is about as long as a brief outage lasts (a node's restart,
// its 503s while etcd elects a leader, within its 5 s request timeout), so
// that a node that failed once is preferred again soon; one that still
// fails when it is tried after that is passed over for longer. The memory
// only orders the nodes: a call still tries each one before it gives up,
// so a node that is back is not missed for long.
const (
	failMemory    = 10 * time.Second
	maxFailMemory = 160 * time.Second
)

// markFailed records that a request sent to node i at sent failed at now
// (on Client.clock).
func (c *Client) markFailed(i int, now, sent time.Duration) {
	for {
		old := c.marks[i].Load()
		m := &failMark{streak: 1}
		if old != nil {
			m.streak = old.streak
			if sent >= old.until {
				m.streak++
			}
		}
		m.until = now + min(failMemory<<min(m.streak-1, 8), maxFailMemory)
		if old != nil && m.until <= old.until {
			return // another request that failed with this one marked it
		}
		if c.marks[i].CompareAndSwap(old, m) {
			return
		}
	}
}

// pickNode returns the first node, round robin from start (included), that
// skip does not exclude and that has not failed recently at now (see
// markFailed); if each of those has, the one whose memory of its failure
// runs out first, which is the one that failed longest ago when their
// streaks are alike; -1 if skip excludes every node.
func (c *Client) pickNode(start int, skip func(int) bool, now time.Duration) int {
	n := len(c.bases)
	best, bestUntil := -1, time.Duration(0)
	for k := range n {
		j := (start + k) % n
		if skip(j) {
			continue
		}
		m := c.marks[j].Load()
		if m == nil || now >= m.until {
			return j
		}
		if best < 0 || m.until < bestUntil {
			best, bestUntil = j, m.until
		}
	}
	return best
}

// nodeFailed reports whether err, the failure of a request sent under
// ctx, says that the node it went to failed: it got no HTTP answer (a
// connection refused or reset, a TLS failure, an http.Client's Timeout:
// the errors of http.Client.Do are *url.Error), an answer cut short
// (errBodyCut), an attempt of the client's own that ran out of time
// (errAttemptTimeout), 502, 503 or 504 (a node that cannot reach its
// store answers 503), or a 404 that is not the registry's (a proxy's page
// for a node it took out). The caller's own cancellation or deadline says
// nothing of the node.
func nodeFailed(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return errors.Is(context.Cause(ctx), errAttemptTimeout)
	}
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode == http.StatusBadGateway || e.StatusCode == http.StatusServiceUnavailable || e.StatusCode == http.StatusGatewayTimeout ||
			e.foreign404() && !e.Identity
	}
	var ue *url.Error
	return errors.As(err, &ue) || errors.Is(err, errBodyCut)
}

// errBodyCut marks a read whose answer broke off before its end (the
// node died while it sent it): safe to send again elsewhere, as a read.
var errBodyCut = errors.New("the answer broke off")
