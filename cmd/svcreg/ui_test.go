package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/ui"
)

func fetchUI(t *testing.T, method, url, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The dashboard is three static files with a strict policy: no inline
// script or style, nothing from elsewhere.
func TestUIServedWithStrictHeaders(t *testing.T) {
	t.Parallel()
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	for _, c := range []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "/ui/", 200, "text/html; charset=utf-8"},
		{"HEAD", "/ui/", 200, "text/html; charset=utf-8"},
		{"GET", "/ui/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/ui/style.css", 200, "text/css; charset=utf-8"},
		{"GET", "/ui", 301, ""},
		{"GET", "/ui/index.html", 404, "text/plain; charset=utf-8"},
		{"GET", "/ui/static/app.js", 404, "text/plain; charset=utf-8"},
		{"POST", "/ui/", 405, "text/plain; charset=utf-8"},
	} {
		resp, _ := fetchUI(t, c.method, srv.url+c.path, "")
		if resp.StatusCode != c.code || resp.Header.Get("Content-Type") != c.ctype && c.ctype != "" ||
			resp.Header.Get("Content-Security-Policy") != ui.ContentSecurityPolicy || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
			resp.Header.Get("Cross-Origin-Opener-Policy") != "same-origin" {
			t.Errorf("%s %s: %d %q, CSP %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"))
		}
	}
	if resp, _ := fetchUI(t, "GET", srv.url+"/ui", ""); resp.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui redirects to %q", resp.Header.Get("Location"))
	}
	_, page := fetchUI(t, "GET", srv.url+"/ui/", "")
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, `src="app.js"`) {
			t.Errorf("inline script: %s", tag)
		}
	}
	if regexp.MustCompile(`(?i)\sstyle=|<style|\son[a-z]+=|https?://`).MatchString(page) {
		t.Error("the page has inline style, an inline handler or an outside URL")
	}
	_, script := fetchUI(t, "GET", srv.url+"/ui/app.js", "")
	if regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|https?://`).MatchString(script) {
		t.Error("app.js builds markup from strings or reaches outside the server")
	}
	// /uix is not the dashboard: the API's 404.
	if resp, body := fetchUI(t, "GET", srv.url+"/uix", ""); resp.StatusCode != 404 || !strings.Contains(body, "notFoundError") {
		t.Errorf("/uix: %d %s", resp.StatusCode, body)
	}
}

func TestUIOff(t *testing.T) {
	t.Parallel()
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--ui=false")
	for _, p := range []string{"/ui", "/ui/", "/ui/app.js"} {
		if resp, body := fetchUI(t, "GET", srv.url+p, ""); resp.StatusCode != 404 || !strings.Contains(body, "notFoundError") {
			t.Errorf("--ui=false: GET %s: %d %s", p, resp.StatusCode, body)
		}
	}
}

// The pages carry no registry data, whoever asks; the data comes from the
// API, which keeps each tenant to its own.
func TestUINoPageLeaksAnotherTenant(t *testing.T) {
	t.Parallel()
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	alice, bob := login(t, srv.url, "alice"), login(t, srv.url, "bob")
	if alice.tenant == bob.tenant {
		t.Fatal("alice and bob share a tenant")
	}
	must(t, alice, "POST", "/services", map[string]any{"id": "alice-secret-svc", "heartbeat_timeout": 60, "tags": []string{"alice-secret-tag"}}, 201)
	must(t, alice, "PUT", "/configuration//alice-secret-ns/key", map[string]string{"value": "alice-secret-value"}, 204)

	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		_, anon := fetchUI(t, "GET", srv.url+p, "")
		for _, token := range []string{alice.token, bob.token} {
			if _, body := fetchUI(t, "GET", srv.url+p, token); body != anon {
				t.Errorf("%s differs with a token", p)
			}
		}
		if strings.Contains(anon, "alice-secret") {
			t.Errorf("%s holds registry data", p)
		}
	}
	// What the page asks for, asked with bob's token: alice's tenant is
	// refused, bob's own holds nothing of alice's.
	paths := []string{"/services?limit=1000", "/services/alice-secret-svc", "/events?limit=1000", "/events?limit=1000&wait=1s",
		"/configuration?limit=1000", "/limits"}
	intruder := &api{url: srv.url, tenant: alice.tenant, token: bob.token, http: bob.http}
	for _, p := range paths {
		if code, body, err := intruder.do("GET", p, nil); err != nil || code != 401 || strings.Contains(string(body), "alice-secret") {
			t.Errorf("bob's token on alice's tenant: GET %s: %d %s %v", p, code, body, err)
		}
		code, body, err := bob.do("GET", p, nil)
		if p == "/services/alice-secret-svc" {
			if code != 404 { // the answer names the id asked for, nothing else
				t.Errorf("bob's tenant: GET %s: %d %s %v", p, code, body, err)
			}
			continue
		}
		if err != nil || code != 200 || strings.Contains(string(body), "alice-secret") {
			t.Errorf("bob's tenant: GET %s: %d %s %v", p, code, body, err)
		}
	}
}

// A revoked or expired token is refused on every request the page makes;
// the page then shows the sign-in form (TestUISessionEndsInBrowser).
func TestUIRefusesRevokedAndExpiredTokens(t *testing.T) {
	t.Parallel()
	paths := []string{"/services?limit=1000", "/events?limit=1000&wait=1s", "/configuration?limit=1000", "/limits"}
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	if code, _, err := a.raw("DELETE", "/v2.0/tokens/"+a.token); err != nil || code != 204 {
		t.Fatalf("revoke: %d %v", code, err)
	}
	for _, p := range paths {
		if code, _, err := a.do("GET", p, nil); err != nil || code != 401 {
			t.Errorf("revoked token: GET %s: %d %v", p, code, err)
		}
	}

	short := startServerProcess(t, "--data-dir", t.TempDir(), "--token-ttl", "1s")
	b := login(t, short.url, "dev")
	must(t, b, "GET", "/limits", nil, 200)
	eventuallyTrue(t, "the token expired", func() bool {
		code, _, err := b.do("GET", "/limits", nil)
		return err == nil && code == 401
	})
	for _, p := range paths {
		if code, _, err := b.do("GET", p, nil); err != nil || code != 401 {
			t.Errorf("expired token: GET %s: %d %v", p, code, err)
		}
	}
}

// must makes an API request and fails the test unless it answers want.
func must(t testing.TB, a *api, method, path string, body any, want int) []byte {
	t.Helper()
	code, data, err := a.do(method, path, body)
	if err != nil || code != want {
		t.Fatalf("%s %s: %d %s %v, want %d", method, path, code, data, err, want)
	}
	return data
}

// raw sends a request to a path at the server's root with the token.
func (a *api) raw(method, path string) (int, []byte, error) { return a.send(method, a.url+path, nil) }
