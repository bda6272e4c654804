package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server"
)

func TestDescribeFault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  *registry.Error
		want string
	}{
		{"missing object", &registry.Error{StatusCode: 404, Type: "notFoundError", Message: "object does not exist",
			Details: `Object "Service" with key "nope" does not exist`}, `Object "Service" with key "nope" does not exist`},
		{"validation", &registry.Error{StatusCode: 400, Type: "badRequest", Message: "Validation error for key 'id'",
			Details: "Invalid characters"}, "Validation error for key 'id': Invalid characters"},
		{"details repeat the message", &registry.Error{StatusCode: 400, Type: "serviceWithThisIdExists",
			Message: "Service with id web1 already exists.", Details: "Service with id web1 already exists."}, "Service with id web1 already exists."},
		{"limit", &registry.Error{StatusCode: 400, Type: "limitReached", Message: "Resource limit has been reached",
			Details: "Limit for resource service has been reached. Maximum allowed objects: 200"},
			"Resource limit has been reached: Limit for resource service has been reached. Maximum allowed objects: 200"},
		{"unknown route", &registry.Error{StatusCode: 404, Type: "notFoundError", Method: "GET", URL: "http://r/7777/services",
			Message: "The page cannot be found.", Details: map[string]any{"requested_path": "/7777/services"}},
			"GET http://r/7777/services: The page cannot be found.; is --url the API's base URL, ending in /v1.0?"},
		{"not the registry: 405", &registry.Error{StatusCode: 405, Method: "GET", URL: "http://r/v1.0/7777/services", Message: "method not allowed"},
			"GET http://r/v1.0/7777/services: method not allowed; is --url the API's base URL, ending in /v1.0?"},
		{"not the registry: empty 405", &registry.Error{StatusCode: 405, Method: "POST", URL: "http://r/v2.0/tokens", Identity: true},
			"POST http://r/v2.0/tokens: 405 Method Not Allowed; is the identity endpoint right (--auth-url, ending in /v2.0; without it, --url's)?"},
		{"not the registry: 400 without a fault", &registry.Error{StatusCode: 400, Method: "GET", URL: "http://r:8443/v1.0/7777/services",
			Message: "Client sent an HTTP request to an HTTPS server."},
			"GET http://r:8443/v1.0/7777/services: Client sent an HTTP request to an HTTPS server.; is --url the API's base URL, ending in /v1.0?"},
		{"token refused", &registry.Error{StatusCode: 401, Type: "unauthorizedError", Message: "forbidden",
			Details: "Invalid or expired authentication token"}, "unauthorized: Invalid or expired authentication token"},
		{"credentials refused", &registry.Error{StatusCode: 401, Type: "unauthorized", Message: "Username or api key is invalid."},
			"unauthorized: Username or api key is invalid."},
		{"server failure", &registry.Error{StatusCode: 500, Type: "internalError", Message: "Internal Error",
			Details: "Internal Error", TxnID: "tx-1"}, "the registry failed: 500 Internal Error (txnId tx-1)"},
		{"not a fault", &registry.Error{StatusCode: 502}, "the registry failed: 502 Bad Gateway"},
		{"empty 4xx", &registry.Error{StatusCode: 409}, "409 Conflict"},
		{"rate limited", &registry.Error{StatusCode: 429, Type: "tooManyRequests", Message: "Too many failed password logins for this user; retry later.",
			RetryAfter: 42 * time.Second}, "Too many failed password logins for this user; retry later. (the registry asks to wait 42s)"},
		{"retry-after date", &registry.Error{StatusCode: 503, Message: "Service Unavailable", RetryAfter: 300 * time.Millisecond},
			"the registry failed: 503 Service Unavailable (the registry asks to wait 1s)"},
		{"retry-after far ahead", &registry.Error{StatusCode: 503, Message: "Service Unavailable", RetryAfter: math.MaxInt64},
			"the registry failed: 503 Service Unavailable (the registry asks to wait 2562047h47m16s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := describeFault(tc.err)
			if got.Error() != tc.want {
				t.Errorf("describeFault = %q, want %q", got, tc.want)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("describeFault(err) no longer wraps err")
			}
		})
	}
	plain := errors.New("registry: dial tcp: connection refused")
	if got := describeFault(plain); got != plain {
		t.Errorf("describeFault changed a non-fault error: %v", got)
	}
}

// The error of a call every node failed is shown as it is, naming each
// node with its failure, not as the fault of the last one.
func TestDescribeFaultOfEveryNode(t *testing.T) {
	t.Parallel()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	c, err := registry.New(registry.Config{URL: "http://127.0.0.1:1," + busy.URL, Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.Limits(ctx)
	if !errors.Is(err, registry.ErrAllNodesFailed) {
		t.Fatalf("Limits with every node failing: %v", err)
	}
	if got := describeFault(err); got != err {
		t.Errorf("describeFault = %q, want %q", got, err)
	}
}

// A change the registry failed (5xx) may have been made: the one-line
// error says so, and still matches registry.ErrOutcomeUnknown; a read's
// does not.
func TestDescribeFaultOfAChangeWithUnknownOutcome(t *testing.T) {
	t.Parallel()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	c, err := registry.New(registry.Config{URL: busy.URL, Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.CreateService(ctx, registry.Service{ID: "web1", HeartbeatTimeout: 30})
	got := describeFault(err)
	if want := "the registry failed: 503 Service Unavailable; the change may have been made: look before you repeat it"; got.Error() != want {
		t.Errorf("describeFault = %q, want %q", got, want)
	}
	if !errors.Is(got, registry.ErrOutcomeUnknown) {
		t.Error("describeFault of a change with an unknown outcome does not match ErrOutcomeUnknown")
	}
	// Sent, and the connection closed without an answer.
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer cut.Close()
	cc, err := registry.New(registry.Config{URL: cut.URL, Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = cc.CreateService(ctx, registry.Service{ID: "web1", HeartbeatTimeout: 30})
	if got := describeFault(err); !strings.HasSuffix(got.Error(), "; the change may have been made: look before you repeat it") || !errors.Is(got, registry.ErrOutcomeUnknown) {
		t.Errorf("describeFault of a change without an answer = %q", got)
	}
	_, err = c.Limits(ctx)
	if got := describeFault(err); strings.Contains(got.Error(), "may have been made") || errors.Is(got, registry.ErrOutcomeUnknown) {
		t.Errorf("describeFault of a read = %q, matching ErrOutcomeUnknown: %v", got, errors.Is(got, registry.ErrOutcomeUnknown))
	}
}

// A static token sent for another tenant is refused as any invalid token
// is (the registry's fault, which the API keeps); the CLI adds that a
// token is valid for its own tenant only, and only when it was given a
// static token and a tenant.
func TestTokenOfAnotherTenantHintsAtTenant(t *testing.T) {
	clearRegistryEnv(t)
	const tokenA, tokenB = "aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb"
	srv := testserver.Start(t, testserver.Options{Users: []server.User{
		{Name: "a", Tenant: "111", APIKey: "key-a-0123456789abcdef", Tokens: []string{tokenA}},
		{Name: "b", Tenant: "999", Tokens: []string{tokenB}},
	}})
	const hint = "; a token is valid for its own tenant only: is --tenant (or SVCREG_TENANT) the token's?"
	for _, tc := range []struct {
		args []string
		want string // stderr; "" for success
	}{
		{[]string{"limits", "--token", tokenA, "--tenant", "999"}, "svcreg limits: unauthorized: Invalid or expired authentication token" + hint + "\n"},
		{[]string{"services", "list", "--token", tokenA, "--tenant", "999"}, "svcreg services list: unauthorized: Invalid or expired authentication token" + hint + "\n"},
		{[]string{"events", "tail", "--token", tokenA, "--tenant", "999"}, "svcreg events tail: unauthorized: Invalid or expired authentication token" + hint + "\n"},
		{[]string{"limits", "--token", tokenA, "--tenant", "111"}, ""},
		// Credentials: a login that is refused says so, with no word of a tenant.
		{[]string{"limits", "--username", "a", "--api-key", "wrong-key-0123456789"}, "svcreg limits: unauthorized: Username or api key is invalid.\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append(tc.args, "--url", srv.APIURL), strings.NewReader(""), &stdout, &stderr)
		if tc.want == "" {
			if code != exitOK {
				t.Errorf("%v: exit %d, %s", tc.args, code, stderr.String())
			}
			continue
		}
		if code != exitError || stderr.String() != tc.want {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// An id with a "." or ".." path segment, which no valid id has, is
// refused before it is sent: a proxy (nginx) or server that resolves dot
// segments would take "services delete ../configuration/db" to DELETE
// /configuration/db.
func TestDotSegmentIDsAreNotSent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sent []string
	srv := impostor(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Method+" "+r.URL.EscapedPath())
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	defer srv.Close()
	for _, args := range [][]string{
		{"services", "delete", "../configuration/db"},
		{"services", "get", ".."},
		{"services", "update", "a/./b", "--timeout", "30"},
		{"config", "delete", "/ns/../../services/web1"},
		{"config", "get", "../limits"},
		{"config", "list", "/ns/.."},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append(args, "--url", srv.URL, "--username", "x", "--api-key", "k"), strings.NewReader(""), &stdout, &stderr)
		if code != exitError || !strings.Contains(stderr.String(), "path segment") {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and a refusal of the id", args, code, stderr.String())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) > 0 {
		t.Errorf("requests sent for ids with dot segments: %q", sent)
	}
}

// A service id with a slash, which no service id has, gets the
// registry's answer about the id, not a hint at --url as a path the
// registry does not serve would.
func TestServiceIDWithASlashIsTheIDsFault(t *testing.T) {
	t.Parallel()
	srv, _ := tailEnv(t, "slash-id")
	for _, args := range [][]string{{"services", "get", "web/1"}, {"services", "delete", "web/1"}, {"services", "update", "web/1", "--timeout", "30"}} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append(args, "--url", srv.APIURL, "--username", "slash-id", "--api-key", "dev"), strings.NewReader(""), &stdout, &stderr)
		if errs := stderr.String(); code != exitError || strings.Contains(errs, "--url") || !strings.Contains(errs, "serviceId") {
			t.Errorf("%q: exit %d, stderr %q; want the registry's word on the id", args, code, errs)
		}
	}
}

// config set KEY - drops the final newline of standard input (LF or
// CRLF), and nothing else: a value that ends in a carriage return alone
// keeps it.
func TestConfigSetFromStdinKeepsALoneCR(t *testing.T) {
	t.Parallel()
	srv, c := tailEnv(t, "stdin-cr")
	for in, want := range map[string]string{"a\r": "a\r", "b\n": "b", "c\r\n": "c", "d\r\r\n": "d\r", "e\n\n": "e\n"} {
		var stdout, stderr bytes.Buffer
		key := "cr-" + want[:1]
		if code := Main(context.Background(), []string{"config", "set", key, "-", "--url", srv.APIURL, "--username", "stdin-cr", "--api-key", "dev"}, strings.NewReader(in), &stdout, &stderr); code != 0 {
			t.Fatalf("config set %q: exit %d, %s", in, code, stderr.String())
		}
		v, err := c.GetConfig(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if v.Value != want {
			t.Errorf("config set from standard input %q stored %q, want %q", in, v.Value, want)
		}
	}
	// A value over what is read is refused whole, saying so; before, it
	// was cut, and the registry refused what was left.
	var stdout, stderr bytes.Buffer
	in := strings.NewReader(strings.Repeat("x", 100<<10))
	if code := Main(context.Background(), []string{"config", "set", "big", "-", "--url", srv.APIURL, "--username", "stdin-cr", "--api-key", "dev"}, in, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "the value on standard input is over 64 KiB") {
		t.Errorf("config set of 100 KiB from standard input: exit %d, %s", code, stderr.String())
	}
}

// A namespace without its leading / holds no key: config list refuses
// it, saying what to give; before, it printed an empty list.
func TestConfigListNamespaceWithoutItsSlash(t *testing.T) {
	t.Parallel()
	srv, _ := tailEnv(t, "ns-slash")
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"config", "list", "cfg-1", "--url", srv.APIURL, "--username", "ns-slash", "--api-key", "dev"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "give /cfg-1") {
		t.Errorf("config list of a namespace without its /: exit %d, %s%s", code, stdout.String(), stderr.String())
	}
}
