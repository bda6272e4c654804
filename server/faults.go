package server

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/svcreg/svcreg/server/store"
)

// Fault types (spec §4.2).
const (
	faultBadRequest    = "badRequest"
	faultServiceExists = "serviceWithThisIdExists"
	faultInvalidLimit  = "invalidLimit"
	faultLimitReached  = "limitReached"
	faultRateLimit     = "rateLimitReached"
	faultUnauthorized  = "unauthorizedError"
	faultNotFound      = "notFoundError"
	faultMarkerExpired = "markerExpired"
	faultInternal      = "internalError"
	faultSystemFailure = "systemFailureError"
	faultForbidden     = "forbiddenError"
)

// fault is an error answer (spec §4.1). Details is a string, an object, or
// nil to leave the key out.
type fault struct {
	Status  int
	Type    string
	Message string
	Details any
	// RetryAfter, if not zero, is sent as Retry-After, in whole seconds
	// rounded up.
	RetryAfter time.Duration
	// readRefused marks a list read refused before it was read (too many
	// of the account's waiting for their turn): the daily GET limit gives
	// its count back, so that clients that wait out a busy minute do not
	// spend the account's day. One refused by --max-unsent-bytes was read
	// and encoded, and counts.
	readRefused bool
}

func (f *fault) Error() string { return f.Type + ": " + f.Message }

// faultBody is the wire form, keys in the original's order.
type faultBody struct {
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
	TxnID   string `json:"txnId"`
}

// badRequest is a 400 whose message and details are the same text ("m=d").
func badRequest(msg string) *fault {
	return &fault{Status: http.StatusBadRequest, Type: faultBadRequest, Message: msg, Details: msg}
}

// crossOriginWrite is the 403 of a write a web page of another origin
// made a browser send (forbiddenError: the original defines it, and never
// sends it).
var crossOriginWrite = &fault{Status: http.StatusForbidden, Type: faultForbidden, Message: "forbidden",
	Details: "A write sent by a web page of another origin is refused."}

// invalidParam is a 400 for a path id or query parameter.
func invalidParam(param, details string) *fault {
	return &fault{Status: http.StatusBadRequest, Type: faultBadRequest,
		Message: "Invalid value for '" + param + "' query string parameter", Details: details}
}

// invalidField is a 400 for a body field.
func invalidField(key, details string) *fault {
	return &fault{Status: http.StatusBadRequest, Type: faultBadRequest,
		Message: "Validation error for key '" + key + "'", Details: details}
}

func unauthorized(details string) *fault {
	return &fault{Status: http.StatusUnauthorized, Type: faultUnauthorized, Message: "forbidden", Details: details}
}

func notFoundPage(requestedPath string) *fault {
	return &fault{Status: http.StatusNotFound, Type: faultNotFound, Message: "The page cannot be found.",
		Details: map[string]string{"requested_path": echoed(requestedPath)}}
}

// maxEcho bounds a value of the request (its URL, a header, a query
// parameter) that a fault repeats. Such answers are outside the budget of
// list answers not yet taken (unsentBudget), and JSON writes each byte
// that is not UTF-8 as six (\ufffd), a quote as two, and badRequest
// repeats its message as details: without it, a 60 kB request line or
// Content-Type of such bytes, sent without credentials, got a 360 kB
// answer, held by the server until its client took it.
const maxEcho = 1024

// echoed is s as a fault repeats it: cut to maxEcho bytes (at the start
// of a character) with a note of its full length.
func echoed(s string) string { return cutNoted(s, maxEcho) }

// faultFor maps an error to its fault: a *fault is itself, a store error
// its fault. Anything unexpected is a masked 500, logged with the
// transaction id.
func (s *Server) faultFor(txnID string, err error) *fault {
	var f *fault
	var nf *store.NotFoundError
	var le *store.LimitError
	var re *store.RateLimitError
	switch {
	case errors.As(err, &f):
		return f
	case errors.As(err, &nf):
		return &fault{Status: http.StatusNotFound, Type: faultNotFound, Message: "object does not exist", Details: nf.Error()}
	case errors.As(err, &le):
		return &fault{Status: http.StatusBadRequest, Type: faultLimitReached, Message: "Resource limit has been reached", Details: le.Error()}
	case errors.As(err, &re):
		return rateLimited(re.Limit, re.Wait)
	case errors.Is(err, store.ErrMarkerExpired):
		return &fault{Status: http.StatusGone, Type: faultMarkerExpired,
			Message: "Marker has expired",
			Details: "Events after this marker were removed by retention; list the services and configuration again and follow the feed from the X-Registry-Marker of that answer."}
	case errors.Is(err, store.ErrUnavailable):
		if more, ok := s.failLog.allow(); ok {
			s.log.Warn("store unavailable", "txn", txnID, "err", err, more)
		}
		return &fault{Status: http.StatusServiceUnavailable, Type: faultSystemFailure}
	}
	if more, ok := s.failLog.allow(); ok {
		s.log.Error("request failed", "txn", txnID, "err", logValue(err.Error()), more)
	}
	return &fault{Status: http.StatusInternalServerError, Type: faultInternal}
}

// logLimit bounds the log lines of something that can happen at the rate
// clients make it happen: a store that fails every request (a full disk,
// etcd out of reach), accepts that fail for want of descriptors. The lines
// left out are counted, and the next line logged says how many
// (not_logged); every failed request still gets its fault, with its
// transaction id.
type logLimit struct {
	lim     *rate.Limiter
	now     func() time.Time
	skipped atomic.Int64
}

// The failed requests' lines: failLogRate a second after a burst of
// failLogBurst.
const failLogRate, failLogBurst = 10, 20

func newLogLimit(perSecond rate.Limit, burst int, clock func() time.Time) *logLimit {
	if clock == nil {
		clock = time.Now
	}
	return &logLimit{lim: rate.NewLimiter(perSecond, burst), now: clock}
}

// allow reports whether an occurrence is logged, and the attribute to add
// to its line: how many were not logged since the last line (empty if
// none).
func (l *logLimit) allow() (slog.Attr, bool) {
	if !l.lim.AllowN(l.now(), 1) {
		l.skipped.Add(1)
		return slog.Attr{}, false
	}
	if n := l.skipped.Swap(0); n > 0 {
		return slog.Int64("not_logged", n), true
	}
	return slog.Attr{}, true
}

// untold reports whether occurrences left out may be told now (a line of
// their count alone), once they have stopped: else they would be told only
// with the next one, if any.
func (l *logLimit) untold() (slog.Attr, bool) {
	if l.skipped.Load() == 0 || !l.lim.AllowN(l.now(), 1) {
		return slog.Attr{}, false
	}
	return slog.Int64("not_logged", l.skipped.Swap(0)), true
}

// faultJSON is f's body. For any 5xx, message and details are masked as
// "Internal Error" (spec §4.1). Every fault has details, the message if
// nothing more: the official Python client reads details from every fault,
// where the original sometimes left it out (spec §4.1's "URI malformed").
func faultJSON(f *fault, txnID string) []byte {
	body := faultBody{Type: f.Type, Code: f.Status, Message: f.Message, Details: f.Details, TxnID: txnID}
	if body.Details == nil {
		body.Details = body.Message
	}
	if f.Status >= 500 {
		body.Message, body.Details = "Internal Error", "Internal Error"
	}
	data, err := store.MarshalJSON(body)
	if err != nil {
		panic("encode fault: " + err.Error()) // strings and string maps only
	}
	return data
}

// statusClientGone is the status a request is counted with whose client
// went away before it was answered (nginx's 499): a read that waited its
// turn (readGate) or a store call its context ended. Nothing is written,
// and nothing is logged as the server's failure.
const statusClientGone = 499

// writeFault writes the fault for err (see faultFor). Every fault answer
// is written here.
func (s *Server) writeFault(w http.ResponseWriter, rq *request, err error) {
	if rq.r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		s.log.Debug("client gone before the answer", "txn", rq.txnID, "err", err)
		w.WriteHeader(statusClientGone)
		return
	}
	f := s.faultFor(rq.txnID, err)
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
	}
	if f.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Keystone uri="`+rq.baseURL()+`/v2.0"`)
	}
	writeRawJSON(w, f.Status, faultJSON(f, rq.txnID))
}
