package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/svcreg/svcreg/internal/printable"
)

// Sentinel errors for the common faults. A *Error matches them with
// errors.Is:
//
//	if errors.Is(err, registry.ErrNotFound) { … }
var (
	// ErrNotFound: the object does not exist (404 notFoundError; a 404
	// without the registry's fault body, a proxy's, is a temporary error).
	// For a heartbeat it means the registry forgot the service or the
	// token.
	ErrNotFound = errors.New("registry: not found")
	// ErrServiceExists: a service with this id already exists
	// (serviceWithThisIdExists).
	ErrServiceExists = errors.New("registry: service already exists")
	// ErrLimitReached: the account holds as many services or configuration
	// values as it may (limitReached).
	ErrLimitReached = errors.New("registry: resource limit reached")
	// ErrRateLimited: the account made too many requests (rateLimitReached).
	ErrRateLimited = errors.New("registry: rate limit reached")
	// ErrUnauthorized: the credentials or the token were refused (401,
	// from the API or from the identity service).
	ErrUnauthorized = errors.New("registry: unauthorized")
	// ErrMarkerExpired: the events marker is older than the registry's
	// retention (410 markerExpired); list services and configuration again
	// and watch from the X-Registry-Marker of that answer.
	ErrMarkerExpired = errors.New("registry: events marker expired")
	// ErrEventsOutOfOrder: a page of the events feed held an event after
	// the marker asked from but before one the page had already brought
	// (the feed's order is by time, spec §9.2). Skipped, it would be a
	// change lost; applied, it would undo a newer one. A Feed returns the
	// events before it, then this error: list services and configuration
	// again and watch from the X-Registry-Marker of that answer.
	ErrEventsOutOfOrder = errors.New("registry: events out of order")
	// ErrOutcomeUnknown: a change (a POST, PUT or DELETE) was sent but
	// no answer said how it went: the connection broke or the context
	// ended after the request was written, or the registry answered 5xx
	// (it may have committed the change before failing). The change may
	// or may not have been made. A 2xx whose body broke off or did not
	// decode matches it too: the change was made, but what the answer
	// held (a create's token) is lost. It is matched together with the
	// cause.
	ErrOutcomeUnknown = errors.New("registry: no answer to a change that was sent; it may have been made")
	// ErrAllNodesFailed: the client has several registry URLs
	// (Config.URL), and the call tried each, and each failed. The error
	// names each URL with its failure, and matches the error of the one
	// tried last too, as a call to one URL does.
	ErrAllNodesFailed = errors.New("registry: every node failed")
)

// Fault types the API sends (spec §4.2, design "Wire compatibility").
const (
	FaultBadRequest    = "badRequest"
	FaultServiceExists = "serviceWithThisIdExists"
	FaultInvalidLimit  = "invalidLimit"
	FaultLimitReached  = "limitReached"
	FaultRateLimit     = "rateLimitReached"
	FaultUnauthorized  = "unauthorizedError"
	FaultNotFound      = "notFoundError"
	FaultMarkerExpired = "markerExpired"
	FaultInternal      = "internalError"
)

// Error is an error answer of the registry or of the identity service: the
// fault body (spec §4.1) with the HTTP status, method and URL of the
// request.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Method and URL identify the request.
	Method, URL string

	// Type is the fault type, e.g. "notFoundError" (see the Fault
	// constants); for the identity service the key of its error body, e.g.
	// "unauthorized". Empty when the body was not a fault.
	Type string
	// Code is the code in the body; it equals StatusCode for API faults.
	Code int
	// Message is the fault's message ("Internal Error" for any 5xx).
	Message string
	// Details is the fault's details as decoded JSON: usually a string,
	// sometimes an object (map[string]any); nil when absent.
	Details any
	// TxnID is the transaction id of the answer (X-Response-Id), to quote
	// when asking the registry's operators about a request.
	TxnID string
	// RetryAfter is how long the answer's Retry-After header asks the
	// client to wait before sending the request again (a rateLimitReached
	// write or list read, a 429 or 503); 0 when it sent none. The client does not wait
	// or retry by itself: a caller that retries ErrRateLimited waits at
	// least this long.
	RetryAfter time.Duration
	// Identity is set for an answer of the identity service (a login):
	// it then stands for no API fault (ErrNotFound, ErrMarkerExpired, …),
	// only for ErrUnauthorized and ErrRateLimited, and a 4xx other than
	// 400, 401 and 403 is temporary (a proxy's or the service's error,
	// not a refusal of the API call the login was for); a 400 (a username
	// the service refuses) is not.
	Identity bool
}

// Error returns e.g. `registry: GET https://…/services/x: 404 notFoundError:
// object does not exist (Object "Service" with key "x" does not exist)`.
// The registry's text in it (fault type, message, details) is cut to 512
// bytes each, and Go-quoted if it holds a character that does not print
// (a control character, a bidirectional override) or bytes that are not
// UTF-8, so that a log line with the error is one line and drives
// no terminal; the fields keep the text as it came.
func (e *Error) Error() string {
	return "registry: " + e.Method + " " + e.URL + ": " + e.fault()
}

// fault is the answer Error shows after the request: its status, fault
// type, message and details.
func (e *Error) fault() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Type != "" {
		b.WriteByte(' ')
		b.WriteString(ShownText(e.Type))
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if msg != "" {
		b.WriteString(": ")
		b.WriteString(ShownText(msg))
	}
	if d := e.detailsText(); d != "" && d != msg {
		b.WriteString(" (")
		b.WriteString(ShownText(d))
		b.WriteByte(')')
	}
	return b.String()
}

// maxShownText is the most of a registry's text that Error shows, per
// field.
const maxShownText = 512

// ShownText is the registry's text s (a fault's message or details, an
// id, a marker) as this package's errors show it: cut to 512 bytes (at a
// character, with "…"), and Go-quoted with escapes for everything that is
// not ASCII if it holds a character that does not show as itself (a
// control character, a bidirectional override, a letter that shows as
// blank, a variation selector that makes one letter read as another) or
// bytes that are not UTF-8, so that it is one line of text and drives no
// terminal.
func ShownText(s string) string { return printable.Inline(cutText(s)) }

// cutText is s cut to maxShownText bytes (at a character's start), with
// "…" where it was cut.
func cutText(s string) string {
	if len(s) <= maxShownText {
		return s
	}
	return printable.Prefix(s, maxShownText) + "…"
}

// quotedText is the registry's text s Go-quoted, as an error shows a
// value in quotes: cut as ShownText cuts it, and with every rune but ASCII
// escaped if it holds one ShownText would quote.
func quotedText(s string) string {
	s = cutText(s)
	if !printable.AllShown(s, printable.ShowsInline) {
		return strconv.QuoteToASCII(s)
	}
	return strconv.Quote(s)
}

func (e *Error) detailsText() string {
	switch d := e.Details.(type) {
	case nil:
		return ""
	case string:
		return d
	default:
		raw, err := json.Marshal(d)
		if err != nil {
			return ""
		}
		return string(raw)
	}
}

// foreign404 reports whether e is a 404 without the registry's fault (a
// proxy's or balancer's page): it says nothing of the object asked for.
func (e *Error) foreign404() bool {
	return e.StatusCode == http.StatusNotFound && e.Type != FaultNotFound
}

// Is reports whether e is the fault a sentinel error stands for.
func (e *Error) Is(target error) bool {
	if e.Identity && target != ErrUnauthorized && target != ErrRateLimited {
		return false
	}
	switch target {
	case ErrNotFound:
		// The registry's own: a proxy's or balancer's 404 page (a route
		// it lost, a node it took out) says nothing of the object.
		return e.StatusCode == http.StatusNotFound && !e.foreign404()
	case ErrServiceExists:
		return e.Type == FaultServiceExists
	case ErrLimitReached:
		return e.Type == FaultLimitReached
	case ErrRateLimited:
		return e.Type == FaultRateLimit || e.StatusCode == http.StatusTooManyRequests
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrMarkerExpired:
		return e.Type == FaultMarkerExpired || e.StatusCode == http.StatusGone
	}
	return false
}

// outcomeUnknown is a change that was sent and got no answer.
type outcomeUnknown struct{ err error }

func (e *outcomeUnknown) Error() string { return e.err.Error() }
func (e *outcomeUnknown) Unwrap() []error {
	return []error{e.err, ErrOutcomeUnknown}
}

// Temporary reports whether a request that failed with err may succeed if
// sent again unchanged: network errors, 5xx, 401 (credentials may be
// fixed, tokens re-issued), 408, 429 and rateLimitReached. Other faults
// will fail the same way again. A nil err is not temporary.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if !errors.As(err, &e) {
		return true
	}
	if e.Identity && e.StatusCode != http.StatusUnauthorized && e.StatusCode != http.StatusForbidden && e.StatusCode != http.StatusBadRequest {
		return true
	}
	switch {
	case e.StatusCode >= 500,
		e.foreign404(),
		e.StatusCode == http.StatusUnauthorized,
		e.StatusCode == http.StatusRequestTimeout,
		e.StatusCode == http.StatusTooManyRequests,
		e.Type == FaultRateLimit:
		return true
	}
	return false
}

// faultBody is the wire form of an API fault.
type faultBody struct {
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details"`
	TxnID   string `json:"txnId"`
}

// newError builds the *Error for a non-2xx answer from its (size-limited)
// body: an API fault, a Keystone error body ({"unauthorized": {"code":
// 401, "message": …}}), or anything else.
func newError(resp *http.Response, body []byte) *Error {
	e := &Error{
		StatusCode: resp.StatusCode,
		Method:     resp.Request.Method,
		URL:        shownURL(resp.Request.URL),
		TxnID:      resp.Header.Get("X-Response-Id"),
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	var f faultBody
	if json.Unmarshal(body, &f) == nil && f.Type != "" {
		e.Type, e.Code, e.Message, e.Details = f.Type, f.Code, f.Message, f.Details
		if f.TxnID != "" {
			e.TxnID = f.TxnID
		}
		return e
	}
	var ks map[string]struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details any    `json:"details"`
	}
	if json.Unmarshal(body, &ks) == nil && len(ks) == 1 {
		for k, v := range ks {
			e.Type, e.Code, e.Message, e.Details = k, v.Code, v.Message, v.Details
		}
		return e
	}
	e.Code = resp.StatusCode
	if text := strings.TrimSpace(string(body)); text != "" && len(text) <= 200 && !strings.ContainsAny(text, "<") && printable.AllShown(text, printable.ShowsInline) {
		e.Message = text
	}
	return e
}

// RetryAfter is how long the answer that failed with err asked the client
// to wait before sending the request again (the RetryAfter of its *Error),
// or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// LongestRetryAfter is RetryAfter, but when every node failed, the longest
// any of them asked for: the next call tries each again, and the last one
// tried may have given no answer at all.
func LongestRetryAfter(err error) time.Duration {
	var ne *nodesError
	if !errors.As(err, &ne) {
		return RetryAfter(err)
	}
	var d time.Duration
	for _, f := range ne.failed {
		d = max(d, RetryAfter(f.err))
	}
	return d
}

// retryAfter reads a Retry-After header (RFC 9110 §10.2.3): a number of
// seconds or an HTTP date, taken relative to now. It is 0 when the header
// is absent, does not parse, or names a time already past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(math.MaxInt64/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// redactedURL is a URL given as text, as an error may show it: whatever
// lies between its "//" and its last "@", which may be a password, is left
// out, whether or not the URL parses.
func redactedURL(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	from := strings.Index(s, "//") + 2
	if from < 2 || from > at {
		from = 0
	}
	return s[:from] + "…" + s[at:]
}

// showTransportError makes the *url.Error in err, if any, safe to show:
// the user information out of its URL, as shownURL does (the http.Client
// hides a password there, but not a user name, which may be a token), and
// its cause's text shown as ShownText shows the registry's. That text
// may quote what the server sent before anything was trusted: an
// x509.HostnameError lists the certificate's names, ASCII of any length
// with newlines and escape sequences in it.
func showTransportError(err error) {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return
	}
	if u, perr := url.Parse(ue.URL); perr == nil && u.User != nil {
		ue.URL = shownURL(u)
	}
	if ue.Err != nil {
		if text := ue.Err.Error(); ShownText(text) != text {
			ue.Err = shownError{ue.Err}
		}
	}
}

// answerError is err, an answer's decoding failure, with its text as
// ShownText shows it if that differs: encoding/json quotes a number it
// cannot store (one past an int's range) whole, megabytes of digits in a
// registry's answer.
func answerError(err error) error {
	if text := err.Error(); ShownText(text) != text {
		return shownError{err}
	}
	return err
}

// shownError is err with its text as ShownText shows it; it matches what
// err matches, and is a timeout if err is one (url.Error.Timeout asks its
// cause straight).
type shownError struct{ err error }

func (e shownError) Error() string { return ShownText(e.err.Error()) }
func (e shownError) Unwrap() error { return e.err }
func (e shownError) Timeout() bool {
	t, ok := e.err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}

// shownURL is u as errors show it (they reach logs and status pages):
// without the user and password a registry URL may carry, and with its
// query's bytes that are not printable ASCII percent-encoded. The URL of
// an answer may be one a redirect on the registry's host named, whose
// query url.URL.String writes as it came (a bidi override, a C1 control
// such as U+009B, CSI): the path it escapes itself.
func shownURL(u *url.URL) string {
	if u.User == nil && printableASCII(u.RawQuery) {
		return u.String()
	}
	c := *u
	c.User = nil
	if !printableASCII(c.RawQuery) {
		var b strings.Builder
		for i := range len(c.RawQuery) {
			if ch := c.RawQuery[i]; ch > ' ' && ch < 0x7f {
				b.WriteByte(ch)
			} else {
				fmt.Fprintf(&b, "%%%02X", ch)
			}
		}
		c.RawQuery = b.String()
	}
	return c.String()
}

// printableASCII reports whether s holds only printable ASCII other than
// the space.
func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
