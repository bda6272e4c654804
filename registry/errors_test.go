package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/svcreg/svcreg/registry"
)

func TestTemporary(t *testing.T) {
	t.Parallel()
	fault := func(status int, typ string) error {
		return fmt.Errorf("register: %w", &registry.Error{Method: "POST", URL: "http://registry/services", StatusCode: status, Type: typ})
	}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"no error", nil, false},
		{"network error", errors.New("dial tcp 127.0.0.1:1: connection refused"), true},
		{"internal error", fault(http.StatusInternalServerError, registry.FaultInternal), true},
		{"bad gateway without a fault body", fault(http.StatusBadGateway, ""), true},
		{"unauthorized", fault(http.StatusUnauthorized, registry.FaultUnauthorized), true},
		{"request timeout", fault(http.StatusRequestTimeout, ""), true},
		{"too many requests", fault(http.StatusTooManyRequests, ""), true},
		{"rate limit fault", fault(http.StatusRequestEntityTooLarge, registry.FaultRateLimit), true},
		{"bad request", fault(http.StatusBadRequest, registry.FaultBadRequest), false},
		{"service exists", fault(http.StatusConflict, registry.FaultServiceExists), false},
		{"limit reached", fault(http.StatusConflict, registry.FaultLimitReached), false},
		{"not found", fault(http.StatusNotFound, registry.FaultNotFound), false},
		{"a proxy's 404 page", fault(http.StatusNotFound, ""), true},
	} {
		if got := registry.Temporary(tt.err); got != tt.want {
			t.Errorf("%s: Temporary(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
	// Only the registry's 404 says the object does not exist: a
	// heartbeater that took a proxy's for it would give its service up.
	if errors.Is(fault(http.StatusNotFound, ""), registry.ErrNotFound) || !errors.Is(fault(http.StatusNotFound, registry.FaultNotFound), registry.ErrNotFound) {
		t.Error("ErrNotFound matches a 404 without the registry's fault, or not the registry's")
	}
}

// ErrOutcomeUnknown: a change that was sent and got no answer, a 5xx, or
// a 2xx cut off; not a request that never left, nor a read, nor a refusal.
func TestOutcomeUnknown(t *testing.T) {
	t.Parallel()
	// hangUp reads the request and closes the connection without an
	// answer; status answers with a status.
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer hangUp.Close()
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer status.Close()
	conflict := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"type":"serviceWithThisIdExists","code":409,"message":"exists"}`)
	}))
	defer conflict.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens: a request never leaves
	// cutAnswer takes the change and dies while it answers 201: the
	// service was made, and its token is lost.
	cutAnswer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		c, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		buf.WriteString("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"tok")
		buf.Flush()
		c.Close()
	}))
	defer cutAnswer.Close()

	ctx := context.Background()
	create := func(base string) error {
		c, err := registry.New(registry.Config{URL: base + "/v1.0", Token: "t", Tenant: "1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.CreateService(ctx, registry.Service{ID: "a", HeartbeatTimeout: 10})
		return err
	}
	get := func(base string) error {
		c, _ := registry.New(registry.Config{URL: base + "/v1.0", Token: "t", Tenant: "1"})
		defer c.Close()
		_, err := c.GetService(ctx, "a")
		return err
	}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"create, connection closed after the request", create(hangUp.URL), true},
		{"create, not connected", create(closed.URL), false},
		{"create, 503", create(status.URL), true},
		{"create, 201 cut off", create(cutAnswer.URL), true},
		{"get, 200 cut off", get(cutAnswer.URL), false},
		{"get, 503", get(status.URL), false},
		{"create, 409", func() error {
			c, _ := registry.New(registry.Config{URL: conflict.URL + "/v1.0", Token: "t", Tenant: "1"})
			defer c.Close()
			_, err := c.CreateService(ctx, registry.Service{ID: "a", HeartbeatTimeout: 10})
			return err
		}(), false},
		{"get, connection closed after the request", get(hangUp.URL), false},
	} {
		if tt.err == nil {
			t.Fatalf("%s: no error", tt.name)
		}
		if got := errors.Is(tt.err, registry.ErrOutcomeUnknown); got != tt.want {
			t.Errorf("%s: errors.Is(%v, ErrOutcomeUnknown) = %t, want %t", tt.name, tt.err, got, tt.want)
		}
	}
	// The 5xx is still the registry's error, and temporary.
	var e *registry.Error
	if err := create(status.URL); !errors.As(err, &e) || e.StatusCode != 503 || !registry.Temporary(err) {
		t.Errorf("create, 503: %v: not a temporary *registry.Error", err)
	}
	// A 5xx of the identity service is no change of the registry's.
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer auth.Close()
	c, err := registry.New(registry.Config{URL: hangUp.URL + "/v1.0", AuthURL: auth.URL + "/v2.0", Username: "u", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateService(ctx, registry.Service{ID: "a", HeartbeatTimeout: 10}); err == nil || errors.Is(err, registry.ErrOutcomeUnknown) {
		t.Errorf("create after the identity service answered 503: %v; want an error, not ErrOutcomeUnknown", err)
	}
}

// An error shows the request's URL without the user and password the
// registry URL may carry: errors reach logs, /healthz and status pages.
func TestErrorsHideURLCredentials(t *testing.T) {
	t.Parallel()
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer status.Close()
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	for _, base := range []string{status.URL, redirect.URL} {
		c, err := registry.New(registry.Config{URL: strings.Replace(base, "http://", "http://renderer:s3cret-key@", 1) + "/v1.0", Token: "t", Tenant: "1"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetService(context.Background(), "a")
		c.Close()
		if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "renderer@") {
			t.Errorf("error %v; want one without the URL's user and password", err)
		}
	}
}

// A registry's (or a proxy's) text in an error's message is bounded and
// escaped: a fault of 30 KB with terminal escapes and a carriage return
// would otherwise be a log line that rewrites the terminal and forges
// lines. The error's fields keep the text as it came.
func TestErrorShowsRegistryTextSafely(t *testing.T) {
	t.Parallel()
	hostile := "\x1b]0;owned\x07\x1b[2J\rINFO all good" + strings.Repeat("x", 30<<10)
	for _, tc := range []struct {
		name string
		body string
	}{
		{"fault", jsonText(t, map[string]any{"type": "badRequest", "code": 400, "message": hostile, "details": "d\x1b[31m"})},
		{"fault type", jsonText(t, map[string]any{"type": "t\r\nFAKE LINE", "code": 400, "message": "m"})},
		{"bidi", jsonText(t, map[string]any{"type": "badRequest", "code": 400, "message": "bad \u202eevil\u2066 x"})},
		// Printable to unicode.IsPrint, but it shows as nothing: "api\u3164"
		// reads as "api".
		{"blank letter", jsonText(t, map[string]any{"type": "badRequest", "code": 400, "message": "no service api\u3164"})},
		{"plain text", "\x1b[2Jshort"},
		{"not UTF-8", "bad \xff byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, tc.body)
			}))
			defer api.Close()
			c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.GetService(context.Background(), "a")
			if err == nil {
				t.Fatal("no error")
			}
			s := err.Error()
			if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\u202e' || r == '\u2066' || r == '\u3164' }) || !utf8.ValidString(s) || len(s) > 2048 {
				t.Errorf("error text of %d bytes with control characters or bytes not UTF-8: %.200q", len(s), s)
			}
			var e *registry.Error
			if errors.As(err, &e) && tc.name == "fault" && e.Message != hostile {
				t.Errorf("the error's Message is not the registry's text as it came")
			}
		})
	}
}

func jsonText(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A Config printed or logged, as a program's startup log might, shows
// none of the account's secrets, in any of the forms it can be printed in.
func TestConfigHidesSecrets(t *testing.T) {
	t.Parallel()
	cfg := registry.Config{
		URL:      "https://renderer:url-s3cret@registry.example.com/v1.0",
		Token:    "token-s3cret-0123456789",
		Tenant:   "7777",
		Username: "deploy",
		APIKey:   "apikey-s3cret",
		Password: "password-s3cret",
		AuthURL:  "https://u:auth-s3cret@identity.example.com/v2.0",
		CACert:   "/etc/svcreg/private-ca.pem",
	}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("start", "registry", cfg)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("start", "registry", cfg)
	for _, out := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", &cfg),
		fmt.Sprintf("%+v", struct{ Registry registry.Config }{cfg}),
		text.String(), js.String(),
	} {
		if strings.Contains(out, "s3cret") {
			t.Errorf("%s\nshows a secret", out)
		}
		if !strings.Contains(out, "deploy") || !strings.Contains(out, "registry.example.com") || !strings.Contains(out, "private-ca.pem") {
			t.Errorf("%s\nleaves out the username, the host or the CA file", out)
		}
	}
	if s := fmt.Sprintf("%#v", cfg); !strings.HasPrefix(s, "registry.Config{") {
		t.Errorf("%%#v = %s, want it to name registry.Config", s)
	}
	if cfg.APIKey != "apikey-s3cret" {
		t.Error("formatting changed the Config")
	}
}

// An AuthURL that does not parse is refused by New, without its password:
// sent as is, every call's error quoted it whole, as url.Parse's error
// does.
func TestBadAuthURLRefusedWithoutItsPassword(t *testing.T) {
	t.Parallel()
	for _, au := range []string{
		"http://user:s3cret@127.0.0.1:badport/v2.0",
		"http://user:s3cret@host%zz/v2.0",
		"http://user:s3cret@[::1/v2.0",
		"identity.example.com/v2.0",
	} {
		c, err := registry.New(registry.Config{URL: "http://127.0.0.1:1", AuthURL: au, Username: "u", APIKey: "k"})
		if err == nil {
			_, err = c.Authenticate(context.Background())
			c.Close()
			t.Errorf("New with AuthURL %s: no error; Authenticate: %v", au, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New with AuthURL %s: %v; want an error without the password", au, err)
		}
	}
}
