package main

// The dashboard and the renderer's status page are tested in a real browser:
// Debian's chromium, driven from Go with chromedp. chromedp speaks the
// DevTools protocol directly from the test process: no Node, no WebDriver
// server, no browser download (it runs the chromium that `make deps`
// installs), and its actions are plain Go values, so the tests read like the
// other tests here. rod would do as well; chromedp has fewer moving parts
// (no launcher that fetches its own browser).

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/svcreg/svcreg/internal/testfs"
	"github.com/svcreg/svcreg/internal/testprog"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the browser tests' screenshots to docs/ui-*.png")

// browserTimeout bounds one browser test; a waiting step fails long before.
const browserTimeout = 2 * time.Minute

type browser struct {
	t   testing.TB
	ctx context.Context
	// patience is how long wait waits (0: 20 s).
	patience time.Duration
}

// newBrowser starts a headless chromium with a fresh profile. Without
// chromium the test is skipped, except under CI=true, where it fails:
// `make test` installs chromium.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	return newBrowserFor(t, browserTimeout)
}

// newBrowserFor is newBrowser for a test that takes longer than
// browserTimeout by design: it runs for up to d.
func newBrowserFor(t testing.TB, d time.Duration) *browser {
	t.Helper()
	bin := testprog.Find(t, "chromium", "the browser tests drive Debian's chromium; `make deps` installs it (apt-get install chromium)")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), d)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancelTimeout() })
	b := &browser{t: t, ctx: bctx}
	b.do(chromedp.EmulateViewport(1280, 860))
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// wait waits until the JavaScript expression is true, for 20 s (or the
// browser's patience).
//
// A poll that a navigation cut short (its page's context gone: a loaded
// machine can let chromedp's Navigate return before the new page's
// context is the one polled) polls again, within the same time.
func (b *browser) wait(what, expr string) {
	b.t.Helper()
	patience := b.patience
	if patience == 0 {
		patience = 20 * time.Second
	}
	deadline := time.Now().Add(patience)
	for {
		_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Until(deadline))))
		if err == nil {
			return
		}
		if s := err.Error(); time.Now().Before(deadline) && (strings.Contains(s, "Cannot find context") ||
			strings.Contains(s, "context was destroyed") || strings.Contains(s, "navigated or closed")) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		b.t.Fatalf("waiting for %s: %v\n%s", what, err, b.text("document.body ? document.body.innerText : ''"))
	}
}

// text evaluates a JavaScript expression to a string.
func (b *browser) text(expr string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// set sets a form control's value as a user would, with its event.
func (b *browser) set(id, value, event string) {
	b.t.Helper()
	b.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.getElementById(%s); e.value = %s; e.dispatchEvent(new Event(%s)); })()`, js(id), js(value), js(event))))
}

// js quotes s as a JavaScript string.
func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// screenshot writes docs/ui-NAME.png at the given viewport width, with
// -update-screenshots only: a normal run writes nothing into the tree.
func (b *browser) screenshot(name string, width int64) {
	b.t.Helper()
	if !*updateScreenshots {
		return
	}
	b.do(chromedp.EmulateViewport(width, 760))
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.do(chromedp.EmulateViewport(1280, 860))
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "ui-"+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// signIn signs in on the dashboard's form and waits for the live feed.
func (b *browser) signIn(base, user, key string) {
	b.t.Helper()
	b.do(chromedp.Navigate(base + "/ui/"))
	b.wait("the sign-in form", `!document.getElementById('signin').hidden`)
	b.do(
		chromedp.SendKeys(chromedp.CSS("#signin-user"), user),
		chromedp.SendKeys(chromedp.CSS("#signin-secret"), key),
		chromedp.Click(chromedp.CSS("#signin-submit")),
	)
	b.wait("the services view", `!document.getElementById('view-services').hidden`)
	b.wait("the live feed", `document.getElementById('ev-state').textContent === 'live'`)
}

// Hostile registry data: tags and metadata may hold any text; an id may be
// a name that means something to JavaScript objects.
const (
	hostileID    = "__proto__"
	hostileTag   = `<img src=x onerror="window.pwned=1">`
	hostileKey   = `<script>window.pwned=2</script>`
	hostileValue = `"><svg onload=window.pwned=3>`
	hostileConf  = `</pre><b onclick=alert(1)>bold</b><script>window.pwned=4</script>`
)

// noInjection fails if registry data became markup or ran.
func (b *browser) noInjection() {
	b.t.Helper()
	got := b.text(`JSON.stringify({pwned: String(window.pwned), img: document.querySelectorAll('img').length,
		svg: document.querySelectorAll('svg').length, inline: document.querySelectorAll('script:not([src])').length,
		b: document.querySelectorAll('b').length})`)
	if got != `{"pwned":"undefined","img":0,"svg":0,"inline":0,"b":0}` {
		b.t.Fatalf("registry data became markup: %s", got)
	}
}

func TestUIDashboardInBrowser(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")

	b.do(chromedp.Navigate(srv.url + "/ui/"))
	b.wait("the sign-in form", `!document.getElementById('signin').hidden`)
	b.screenshot("signin", 1280)
	b.signIn(srv.url, "dev", "dev")
	if got := b.text(`location.href + '|' + document.cookie`); got != srv.url+"/ui/#services|" {
		t.Fatalf("location and cookies after sign-in: %q (the token belongs in session storage only)", got)
	}
	if tok := b.text(`JSON.parse(sessionStorage.getItem('svcreg.session')).token`); tok == "" {
		t.Fatal("no token in session storage")
	}
	// Anything that reloads the page loses this.
	b.do(chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`))

	// A service registered through the API appears, and its countdown runs.
	// The services get no heartbeats: their timeouts (but beat-1's) outlast
	// the test on a loaded machine.
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 110,
		"tags": []string{"www", "eu"}, "metadata": map[string]string{"ip": "10.0.0.7", "port": "8080"}}, 201)
	b.wait("web-1 in the table", `!!document.querySelector('#svc-body tr[data-id="web-1"]')`)
	b.wait("the countdown", `(() => {
		const c = document.querySelector('#svc-body tr[data-id="web-1"] .countdown');
		window.firstCount = window.firstCount || c.textContent;
		return /^[0-9]+s$/.test(c.textContent) && c.textContent !== window.firstCount;
	})()`)
	must(t, a, "POST", "/services", map[string]any{"id": "db-1", "heartbeat_timeout": 120,
		"tags": []string{"db"}, "metadata": map[string]string{"ip": "10.0.0.9", "port": "5432", "role": "primary"}}, 201)
	must(t, a, "POST", "/services", map[string]any{"id": "api-2", "heartbeat_timeout": 100,
		"tags": []string{"www", "api"}, "metadata": map[string]string{"ip": "10.0.1.2", "port": "9000"}}, 201)
	b.wait("three services", `document.querySelectorAll('#svc-body tr').length === 3`)

	// A heartbeat emits no event: the countdown of a heartbeated service
	// goes back up (the page reads the list again when it reaches zero),
	// and once the heartbeats stop the service times out and goes away.
	var created struct{ Token string }
	json.Unmarshal(must(t, a, "POST", "/services", map[string]any{"id": "beat-1", "heartbeat_timeout": 4}, 201), &created)
	stop := make(chan struct{})
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		token := created.Token
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			var next struct{ Token string }
			_, body, _ := a.do("POST", "/services/beat-1/heartbeat", map[string]string{"token": token})
			if json.Unmarshal(body, &next) == nil && next.Token != "" {
				token = next.Token
			}
		}
	}()
	b.wait("the heartbeated countdown going up", `(() => {
		const c = document.querySelector('#svc-body tr[data-id="beat-1"] .countdown');
		if (!c || !/^[0-9]+s$/.test(c.textContent)) return false;
		const n = parseInt(c.textContent, 10);
		window.lowest = Math.min(window.lowest === undefined ? 99 : window.lowest, n);
		return n > window.lowest;
	})()`)
	close(stop)
	<-beating
	b.wait("the timed-out service gone", `!document.querySelector('#svc-body tr[data-id="beat-1"]')`)

	// Filter by tag and by text; sort by a column.
	b.set("svc-tag", "www", "change")
	b.wait("the www filter", `Array.from(document.querySelectorAll('#svc-body tr')).map(r => r.dataset.id).join() === 'api-2,web-1'`)
	b.set("svc-tag", "", "change")
	b.do(chromedp.SendKeys(chromedp.CSS("#svc-filter"), "5432"))
	b.wait("the text filter", `Array.from(document.querySelectorAll('#svc-body tr')).map(r => r.dataset.id).join() === 'db-1'`)
	b.set("svc-filter", "", "input")
	b.do(chromedp.Click(chromedp.CSS(`th button[data-sort="timeout"]`)))
	b.wait("sorted by timeout", `Array.from(document.querySelectorAll('#svc-body tr')).map(r => r.dataset.id).join() === 'api-2,web-1,db-1'`)
	b.do(chromedp.Click(chromedp.CSS(`th button[data-sort="timeout"]`)))
	b.wait("sorted by timeout, descending", `Array.from(document.querySelectorAll('#svc-body tr')).map(r => r.dataset.id).join() === 'db-1,web-1,api-2'`)
	b.do(chromedp.Click(chromedp.CSS(`th button[data-sort="id"]`)))

	// Hostile data is text.
	must(t, a, "POST", "/services", map[string]any{"id": hostileID, "heartbeat_timeout": 120,
		"tags": []string{hostileTag}, "metadata": map[string]string{hostileKey: hostileValue, "__proto__": "x"}}, 201)
	b.wait("the hostile service", `!!document.querySelector('#svc-body tr[data-id="__proto__"]')`)
	row := `document.querySelector('#svc-body tr[data-id="__proto__"]')`
	if got := b.text(row + `.querySelector('.tag').textContent`); got != hostileTag {
		t.Fatalf("tag shown as %q, want the text %q", got, hostileTag)
	}
	if got := b.text(row + `.querySelector('.meta').textContent`); got != hostileKey+hostileValue+"__proto__x" {
		t.Fatalf("metadata shown as %q", got)
	}
	b.noInjection()
	b.screenshot("services", 1280)
	b.screenshot("services-phone", 390)

	// One service's detail with its raw JSON.
	b.do(chromedp.Click(chromedp.CSS(`#svc-body tr[data-id="__proto__"] a`)))
	b.wait("the detail view", `!document.getElementById('view-service').hidden && document.getElementById('detail-json').textContent.length > 0`)
	var detail struct {
		ID       string            `json:"id"`
		Tags     []string          `json:"tags"`
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(b.text(`document.getElementById('detail-json').textContent`)), &detail); err != nil {
		t.Fatalf("detail JSON: %v", err)
	}
	if detail.ID != hostileID || detail.Tags[0] != hostileTag || detail.Metadata[hostileKey] != hostileValue || detail.Metadata["__proto__"] != "x" {
		t.Fatalf("detail JSON is not the service: %+v", detail)
	}
	b.noInjection()
	b.screenshot("service", 1280)

	// Events arrive live; a type filter; pause and resume; expand one.
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="events"]`)))
	b.wait("the history", `document.querySelectorAll('#ev-list li').length >= 4`)
	must(t, a, "PUT", "/configuration//production/web/banner", map[string]string{"value": hostileConf}, 204)
	b.wait("the configuration event, live", `(() => {
		const li = document.querySelector('#ev-list li');
		return li && li.dataset.type === 'configuration_value.update' &&
			li.querySelector('.what').textContent === '/production/web/banner = ' + `+js(hostileConf)+`;
	})()`)
	b.set("ev-type", "service.join", "change")
	b.wait("the type filter", `Array.from(document.querySelectorAll('#ev-list li')).every(li => li.hidden === (li.dataset.type !== 'service.join'))`)
	b.set("ev-type", "", "change")
	b.do(chromedp.Click(chromedp.CSS("#ev-pause")))
	must(t, a, "DELETE", "/services/api-2", nil, 204)
	b.wait("the held event", `document.getElementById('ev-pause').textContent === 'Resume (1 new)'`)
	if got := b.text(`document.querySelector('#ev-list li').dataset.type`); got != "configuration_value.update" {
		t.Fatalf("a paused feed showed a new event: %s", got)
	}
	b.do(chromedp.Click(chromedp.CSS("#ev-pause")))
	b.wait("the resumed feed", `document.querySelector('#ev-list li').dataset.type === 'service.remove'`)
	b.do(chromedp.Click(chromedp.CSS("#ev-list li:nth-child(2) summary")))
	b.wait("an expanded event", `document.querySelector('#ev-list li:nth-child(2) details').open &&
		JSON.parse(document.querySelector('#ev-list li:nth-child(2) pre').textContent).payload.new_value === `+js(hostileConf))
	b.noInjection()
	b.screenshot("events", 1280)

	// Configuration as a tree.
	must(t, a, "PUT", "/configuration//production/web/workers", map[string]string{"value": "8"}, 204)
	must(t, a, "PUT", "/configuration//production/database/pool_size", map[string]string{"value": "20"}, 204)
	must(t, a, "PUT", "/configuration/feature_flags", map[string]string{"value": "beta,dark-mode"}, 204)
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="config"]`)))
	b.wait("the configuration tree", `document.getElementById('cfg-count').textContent === '4'`)
	if got := b.text(`Array.from(document.querySelectorAll('#cfg-tree summary')).map(s => s.textContent).join()`); got != "/production,/database,/web" {
		t.Fatalf("namespaces: %q", got)
	}
	if got := b.text(`document.querySelector('#cfg-tree li.leaf[title="/production/web/banner"] .v').textContent`); got != hostileConf {
		t.Fatalf("configuration value shown as %q", got)
	}
	b.noInjection()
	b.screenshot("config", 1280)

	// Limits and usage.
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="limits"]`)))
	b.wait("the limits", `Array.from(document.querySelectorAll('#limits .figure')).map(f => f.textContent).slice(0, 2).join() === '3 / 200,4 / 1000'`)
	b.screenshot("limits", 1280)

	if b.text(`String(window.sameDocument)`) != "true" {
		t.Fatal("the page was reloaded")
	}

	// Sign-out revokes the token.
	token := b.text(`JSON.parse(sessionStorage.getItem('svcreg.session')).token`)
	b.do(chromedp.Click(chromedp.CSS("#signout")))
	b.wait("the sign-in form", `!document.getElementById('signin').hidden && sessionStorage.length === 0`)
	revoked := &api{url: srv.url, tenant: a.tenant, token: token, http: a.http}
	eventuallyTrue(t, "the token revoked", func() bool {
		code, _, err := revoked.do("GET", "/limits", nil)
		return err == nil && code == 401
	})
}

// A revoked or expired token sends the page back to sign-in.
func TestUISessionEndsInBrowser(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	dir, addr := t.TempDir(), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	srv := startServerProcess(t, "--data-dir", dir, "--listen", addr)

	b.signIn(srv.url, "dev", "dev")
	token := b.text(`JSON.parse(sessionStorage.getItem('svcreg.session')).token`)

	// The page rides out a server restart: its long-poll fails, it tries
	// again with backoff, and follows the feed again once the server is back
	// (tokens survive restarts).
	srv.kill()
	b.wait("the feed reconnecting", `document.getElementById('ev-state').textContent === 'reconnecting'`)
	srv = startServerProcess(t, "--data-dir", dir, "--listen", addr)
	b.wait("the feed live again", `document.getElementById('ev-state').textContent === 'live'`)
	other := login(t, srv.url, "dev") // the same account, another token
	must(t, other, "POST", "/services", map[string]any{"id": "after-restart", "heartbeat_timeout": 30}, 201)
	b.wait("the feed followed again", `!!document.querySelector('#svc-body tr[data-id="after-restart"]')`)
	revoke := &api{url: srv.url, tenant: "", token: token, http: other.http}
	req := fmt.Sprintf("/v2.0/tokens/%s", token)
	code, _, err := revoke.raw("DELETE", req)
	if err != nil || code != 204 {
		t.Fatalf("revoke: %d %v", code, err)
	}
	// The next request the page makes (here: after the event) is refused.
	must(t, other, "POST", "/services", map[string]any{"id": "after-revoke", "heartbeat_timeout": 30}, 201)
	b.wait("sign-in after the revoke", `!document.getElementById('signin').hidden && sessionStorage.length === 0 &&
		/revoked/.test(document.getElementById('notice').textContent)`)
	if got := b.text(`document.getElementById('svc-body').textContent + document.getElementById('ev-list').textContent`); got != "" {
		t.Fatalf("the signed-out page still shows registry data: %q", got)
	}

	short := startServerProcess(t, "--data-dir", t.TempDir(), "--token-ttl", "3s")
	b.signIn(short.url, "dev", "dev")
	b.wait("sign-in after the token expired", `!document.getElementById('signin').hidden &&
		/expired/.test(document.getElementById('notice').textContent)`)

	// A user of a users file signs in with a password; a wrong one is told.
	// At bcrypt's lowest cost: at the default cost each hash and check
	// takes over a second of CPU in a -race binary (the server checks the
	// password twice and makes a dummy hash of the same cost).
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users.toml")
	writeFile(t, users, fmt.Sprintf("[[user]]\nname = \"ops\"\ntenant = \"4242\"\npassword_hash = %q\n", string(hash)))
	withUsers := startUsersServer(t, "--users", users)
	b.do(chromedp.Navigate(withUsers.url + "/ui/"))
	b.wait("the sign-in form", `!document.getElementById('signin').hidden`)
	b.do(
		chromedp.Click(chromedp.CSS(`input[name=kind][value=password]`)),
		chromedp.SendKeys(chromedp.CSS("#signin-user"), "ops"),
		chromedp.SendKeys(chromedp.CSS("#signin-secret"), "wrong horse"),
		chromedp.Click(chromedp.CSS("#signin-submit")),
	)
	b.wait("the refusal", `!document.getElementById('signin-error').hidden && document.getElementById('signin-secret').value !== ''`)
	b.set("signin-secret", "", "input")
	b.do(
		chromedp.SendKeys(chromedp.CSS("#signin-secret"), "correct horse"),
		chromedp.Click(chromedp.CSS("#signin-submit")),
	)
	b.wait("signed in with the password", `!document.getElementById('view-services').hidden &&
		document.getElementById('who-tenant').textContent === '4242'`)
}

// The renderer's status page shows a group whose check fails and a group
// installed and reloaded after a registry change, with its diff and plots.
func TestTemplateStatusPageInBrowser(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 120, "tags": []string{"www"}}, 201)

	dir := testfs.SearchableTempDir(t) // the diff of a file every user may read is shown
	www, broken := filepath.Join(dir, "www.conf"), filepath.Join(dir, "broken.conf")
	d, page := startStatusPage(t, srv.url, fmt.Sprintf(`[[template]]
contents = '''
upstream www {
{{- range servicesWithTag "www" }}
    server {{ ident .ID }}:80;
{{- end }}
}
'''
destination = %q
reload_group = "www-upstreams"
check = "true"
reload = "true"

[[template]]
contents = "# {{ len services }} services\n"
destination = %q
reload_group = "broken-check"
check = "echo 'syntax error in {{ .Staged }}' >&2; false"
`, www, broken))
	eventuallyTrue(t, "web-1 installed", func() bool { return strings.Contains(readString(www), "server web-1:80;") })
	must(t, a, "POST", "/services", map[string]any{"id": "web-2", "heartbeat_timeout": 120, "tags": []string{"www"}}, 201)
	eventuallyTrue(t, "web-2 installed", func() bool { return strings.Contains(readString(www), "server web-2:80;") })
	// The install comes before its reload: the page is to show both.
	eventuallyTrue(t, "web-2's reload", func() bool { return strings.Count(d.output(), "msg=reloaded group=www-upstreams") == 2 })

	b.do(chromedp.Navigate(page))
	b.wait("the status page", `!!document.getElementById('state')`)
	group := func(name string) string { return fmt.Sprintf(`document.querySelector('[data-group=%s]')`, js(name)) }
	if got := b.text(group("broken-check") + `.querySelector('tr.step-check').textContent.replace(/\s+/g, ' ')`); !strings.Contains(got, "check failed") || !strings.Contains(got, "syntax error in") {
		t.Fatalf("the failed check is not reported: %q", got)
	}
	if got := b.text(group("www-upstreams") + `.querySelector('tr.step-install td.result').textContent`); got != "ok" {
		t.Fatalf("the install is reported as %q", got)
	}
	if got := b.text(group("www-upstreams") + `.querySelector('.diff pre').textContent`); !strings.Contains(got, "+    server web-2:80;") {
		t.Fatalf("the last installed diff: %q", got)
	}
	if got := b.text(group("www-upstreams") + `.querySelector('.group-head .muted').textContent`); got != "2 reloads in the last hour" {
		t.Fatalf("reloads: %q", got)
	}
	got := b.text(`JSON.stringify([document.getElementById('registry-url').textContent, document.getElementById('account').textContent,
		document.getElementById('synced').textContent, document.getElementById('snap-services').textContent,
		document.querySelectorAll('svg rect.bar').length > 0, document.querySelectorAll('svg circle.dot').length > 0,
		document.querySelectorAll('script').length])`)
	if want := fmt.Sprintf(`[%s,"dev","yes","2",true,true,0]`, js(srv.url+"/v1.0")); got != want {
		t.Fatalf("status page: %s, want %s\n%s", got, want, d.output())
	}
	b.screenshot("template-status", 1280)
}

// The status page's diff does not wrap its lines: a registry value with a
// run of spaces, quoted into a file, showed the rest of its line as a line
// of its own, an added "server" line the change did not add.
func TestTemplateStatusPageDiffLinesDoNotWrap(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "PUT", "/configuration/note", map[string]string{"value": "hello" + strings.Repeat(" ", 300) + "+    server 10.6.6.6:80; #"}, 204)
	dir := testfs.SearchableTempDir(t) // the diff of a file every user may read is shown
	dest := filepath.Join(dir, "www.conf")
	_, page := startStatusPage(t, srv.url, fmt.Sprintf(`[[template]]
contents = '''
upstream www {
    server 10.0.0.1:80;
}
map $host $note { default {{ configAs "note" "none" "nginxString" }}; }
'''
destination = %q
reload_group = "www"
check = "true"
reload = "true"
`, dest))
	eventuallyTrue(t, "the file installed", func() bool { return strings.Contains(readString(dest), "10.6.6.6") })
	b.do(chromedp.Navigate(page))
	pre := `[data-group="www"] .diff pre`
	b.wait("the diff", `!!document.querySelector('`+pre+`') && document.querySelector('`+pre+`').textContent.includes('10.6.6.6')`)
	first, _ := b.lineStart(pre, "+upstream", pre)
	px, _ := b.lineStart(pre, "+    server 10.6.6.6", pre)
	if px < first+100 {
		t.Errorf("the rest of a line of the diff starts %.1f px right of the pre, where its lines start (%.1f px): it reads as a line of its own", px, first)
	}
}

// A session that ends leaves nothing of the account's registry data in
// the page: not the service last opened (hidden, its metadata included),
// nor the tag list, nor a count. The page is loaded afresh.
func TestUISignOutLeavesNothing(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "POST", "/services", map[string]any{"id": "db-1", "heartbeat_timeout": 120,
		"tags": []string{"tag-secret"}, "metadata": map[string]string{"password": "hunter2"}}, 201)
	b.signIn(srv.url, "dev", "dev")
	b.wait("the service", `!!document.querySelector('#svc-body tr[data-id="db-1"]')`)
	// Clicked in the page: a live update may render the row again.
	b.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#svc-body tr[data-id="db-1"] a').click()`))
	b.wait("its details", `document.getElementById('detail-json').textContent.includes('hunter2')`)
	b.do(chromedp.Click(chromedp.CSS("#signout")))
	b.wait("the sign-in form", `!document.getElementById('signin').hidden && sessionStorage.length === 0 &&
		document.getElementById('notice').textContent === 'Signed out.'`)
	if location := b.text(`location.href`); strings.Contains(location, "db-1") {
		t.Errorf("the address still names the service: %s", location)
	}
	if left := b.text(`document.body.textContent + Array.from(document.querySelectorAll('option')).map(o => o.value).join()`); strings.Contains(left, "hunter2") || strings.Contains(left, "tag-secret") || strings.Contains(left, "db-1") {
		t.Errorf("the signed-out page still holds registry data:\n%s", left)
	}
}

// A sign-out the server does not confirm (it cannot be reached) says so:
// the token stays valid until it expires.
func TestUISignOutUnconfirmed(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	b.signIn(srv.url, "dev", "dev")
	srv.kill()
	b.do(chromedp.Click(chromedp.CSS("#signout")))
	b.wait("the warning", `!document.getElementById('signin').hidden && sessionStorage.length === 0 &&
		/did not confirm that it revoked the session, which stays valid until /.test(document.getElementById('notice').textContent)`)
}

// Registry text that would read as other text is shown escaped: a
// right-to-left override shows the tag "\u202edorp" as "prod" and makes a
// metadata key reorder its value; a zero-width space hides. The raw JSON
// is still the service's.
func TestUIShowsInvisibleCharactersEscaped(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	tag, key, value, conf := "\u202edorp", "\u202eelor", "a\u200bb\\c", "10.0.0.5 \u202e1.0.0.01 ,"
	must(t, a, "POST", "/services", map[string]any{"id": "db-1", "heartbeat_timeout": 120,
		"tags": []string{tag, "prod"}, "metadata": map[string]string{key: value}}, 201)
	must(t, a, "PUT", "/configuration/upstream", map[string]string{"value": conf}, 204)
	b.signIn(srv.url, "dev", "dev")
	b.wait("the service", `!!document.querySelector('#svc-body tr[data-id="db-1"]')`)
	row := `document.querySelector('#svc-body tr[data-id="db-1"]')`
	if got := b.text(`Array.from(` + row + `.querySelectorAll('.tag')).map(t => t.textContent).join()`); got != `\u202edorp,prod` {
		t.Errorf("tags shown as %q", got)
	}
	if got := b.text(row + `.querySelector('.meta').textContent`); got != `\u202eelora\u200bb\\c` {
		t.Errorf("metadata shown as %q", got)
	}
	if got := b.text(`Array.from(document.querySelectorAll('#svc-tag option')).map(o => o.textContent + '=' + o.value).join()`); !strings.Contains(got, `\u202edorp=`+tag) {
		t.Errorf("the tag filter's options: %q", got)
	}
	// The filter finds a service by the text shown, escapes and all.
	b.set("svc-filter", `\u200bb`, "input")
	b.wait("the filter by an escape", `document.querySelectorAll('#svc-body tr').length === 1`)
	b.set("svc-filter", "", "input")
	b.do(chromedp.Evaluate[chromedp.Void](row + `.querySelector('a').click()`))
	b.wait("its details", `document.getElementById('detail-json').textContent.includes('db-1')`)
	raw := b.text(`document.getElementById('detail-json').textContent`)
	var detail struct {
		Tags     []string          `json:"tags"`
		Metadata map[string]string `json:"metadata"`
	}
	if strings.ContainsAny(raw, "\u202e\u200b") || json.Unmarshal([]byte(raw), &detail) != nil || detail.Tags[0] != tag || detail.Metadata[key] != value {
		t.Errorf("the raw JSON shown: %q", raw)
	}
	// Marks that show as nothing, and a newline that would show one value
	// as two, are escaped; an emoji's variation selector is text. Each
	// escape is marked, so that the text "\u200b" does not read as one.
	// One unbreakable cluster does not widen the table.
	must(t, a, "POST", "/services", map[string]any{"id": "db-2", "heartbeat_timeout": 120,
		"tags":     []string{"prod\u034f", "prod\ufe00", "\u2764\ufe0f", `a\u200bb`},
		"metadata": map[string]string{"role": "secondary\nrole=primary", "wide": "\u0915" + strings.Repeat("\u093e", 254)}}, 201)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#services'`))
	row2 := `document.querySelector('#svc-body tr[data-id="db-2"]')`
	b.wait("the second service", `!!`+row2)
	if got := b.text(`Array.from(` + row2 + `.querySelectorAll('.tag')).map(t => t.textContent + ':' + t.querySelectorAll('.esc').length).join()`); got != `prod\u034f:1,prod\ufe00:1,`+"\u2764\ufe0f"+`:0,a\u200bb:0` {
		t.Errorf("tags shown as %q (each with its count of escapes marked)", got)
	}
	// The tag filter's options hold text only: those with escapes are
	// marked by their class (red).
	if got := b.text(`Array.from(document.querySelectorAll('#svc-tag option.esc')).map(o => o.textContent).sort().join()`); got != `\u202edorp,prod\u034f,prod\ufe00` {
		t.Errorf("the tag filter's options marked as escaped: %q", got)
	}
	if got := b.text(row2 + `.querySelector('.meta .kv').textContent`); got != `rolesecondary\nrole=primary` {
		t.Errorf("a value with a newline shown as %q", got)
	}
	var px float64
	w := b.text(`String(Math.max(...Array.from(` + row2 + `.querySelectorAll('.kv')).map(k => k.getBoundingClientRect().width)))`)
	if _, err := fmt.Sscan(w, &px); err != nil || px > 24*16+1 {
		t.Errorf("the widest value is %s px wide", w)
	}
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="config"]`)))
	b.wait("the configuration", `!!document.querySelector('#cfg-tree li.leaf[title="upstream"] .v')`)
	if got := b.text(`document.querySelector('#cfg-tree li.leaf[title="upstream"] .v').textContent`); got != `10.0.0.5 \u202e1.0.0.01 ,` {
		t.Errorf("the configuration value shown as %q", got)
	}
}

// lineStart is how far, in px, right of the left edge of the element
// entry selects the line holding needle, in the text of the element text
// selects, starts; and whether that line is below entry's first.
func (b *browser) lineStart(text, needle, entry string) (float64, bool) {
	b.t.Helper()
	got := b.text(`(() => {
		const w = document.createTreeWalker(document.querySelector(` + js(text) + `), NodeFilter.SHOW_TEXT);
		let n, at = -1;
		while ((n = w.nextNode()) && (at = n.data.indexOf(` + js(needle) + `)) < 0) {}
		const r = document.createRange();
		r.setStart(n, at);
		r.setEnd(n, at + 1);
		const c = r.getClientRects()[0], e = document.querySelector(` + js(entry) + `).getBoundingClientRect();
		return (c.left - e.left) + ' ' + (c.top >= e.top + c.height);
	})()`)
	var px float64
	var below bool
	if _, err := fmt.Sscan(got, &px, &below); err != nil {
		b.t.Fatalf("the line of %q: %q", needle, got)
	}
	return px, below
}

// A run of spaces, which the page keeps (pre-wrap), wraps a value as a
// newline would: "secondary" and "role=primary" on lines of their own read
// as two pairs. A value's wrapped lines are indented, where no entry
// starts.
func TestUIWrappedValueIsNotTwo(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	spaces := strings.Repeat(" ", 300)
	must(t, a, "POST", "/services", map[string]any{"id": "db-1", "heartbeat_timeout": 120,
		"metadata": map[string]string{"port": "5432", "role": "secondary" + spaces[:80] + "role=primary"}}, 201)
	must(t, a, "PUT", "/configuration/feature_x", map[string]string{"value": "off" + spaces + "feature_y = on"}, 204)
	b.signIn(srv.url, "dev", "dev")
	check := func(where, text, needle, entry string) {
		t.Helper()
		px, below := b.lineStart(text, needle, entry)
		if !below {
			t.Fatalf("%s: %q is not on a line of its own", where, needle)
		}
		if px < 8 {
			t.Errorf("%s: the wrapped line %q starts %.1f px right of where an entry starts, as another entry", where, needle, px)
		}
	}
	row := `#svc-body tr[data-id="db-1"]`
	b.wait("the service", `!!document.querySelector('`+row+`')`)
	check("the table", row+` .kv:nth-child(2) .v`, "role=primary", row+` .kv:nth-child(2)`)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#service/db-1'`))
	b.wait("its details", `document.getElementById('detail-json').textContent.includes('db-1')`)
	check("the details", `#detail-summary .kv:nth-child(2) .v`, "role=primary", `#detail-summary .kv:nth-child(1)`)
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="config"]`)))
	b.wait("the configuration", `!!document.querySelector('#cfg-tree li.leaf[title="feature_x"] .v')`)
	check("the configuration", `#cfg-tree li.leaf[title="feature_x"] .v`, "feature_y", `#cfg-tree li.leaf[title="feature_x"] .k`)
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="events"]`)))
	ev := `#ev-list li[data-type="configuration_value.update"]`
	b.wait("the event", `!!document.querySelector('`+ev+`')`)
	check("the events", ev+` .what`, "feature_y", ev+` summary time`)
}

// A text of many escapes is a few elements, not one an escape: 200
// services of such metadata made a table the browser took many seconds to
// lay out, again on every change.
func TestUIManyEscapesAreFewElements(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	md := map[string]string{"alt": strings.Repeat("a\x7f", 100)}
	for k := range 19 {
		md[fmt.Sprintf("k%02d", k)+strings.Repeat("\x7f", 10)] = strings.Repeat("\x7f", 200)
	}
	must(t, a, "POST", "/services", map[string]any{"id": "db-1", "heartbeat_timeout": 120, "metadata": md}, 201)
	b.signIn(srv.url, "dev", "dev")
	row := `document.querySelector('#svc-body tr[data-id="db-1"]')`
	b.wait("the service", `!!`+row)
	if n := b.text(`String(` + row + `.querySelectorAll('.esc').length)`); n != "43" {
		t.Errorf("%s elements mark the escapes of 4,090 escaped characters; want 43: one a run, 4 runs at most a text and then its rest", n)
	}
	alt := `Array.from(` + row + `.querySelectorAll('.kv')).find(kv => kv.querySelector('.k').textContent === 'alt').querySelector('.v')`
	if got, want := b.text(alt+`.textContent`), strings.Repeat(`a\x7f`, 100); got != want {
		t.Errorf("the value shown as %q, want %q", got, want)
	}
	if got, want := b.text(alt+`.querySelector('.esc.rest').textContent`), `\x7f`+strings.Repeat(`a\x7f`, 95); got != want {
		t.Errorf("the rest of the value marked as %q, want %q", got, want)
	}
	if got, want := b.text(row+`.querySelector('.kv:nth-child(2) .v').textContent`), strings.Repeat(`\x7f`, 200); got != want {
		t.Errorf("a value of escapes shown as %q", got)
	}
}

// An open page under a stream of changes spends few of the account's
// GETs, which its renderers share: the services list comes again at most
// every 2 s, the feed 1 s after an answer with events. Before, ten
// changes a second made some 15 GETs a second (1.3 million a day against
// the default limit of 500,000). The table still shows the last change.
func TestUIStreamOfChangesSpendsFewGETs(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 120}, 201)
	b.signIn(srv.url, "dev", "dev")
	b.wait("the service", `!!document.querySelector('#svc-body tr[data-id="web-1"]')`)
	used := func() int { return rateUsed(t, a) }
	time.Sleep(time.Second) // the page's first requests done
	before := used()
	const changes = 40
	for i := range changes {
		must(t, a, "PUT", "/services/web-1", map[string]any{"heartbeat_timeout": 60 + i}, 204)
		time.Sleep(100 * time.Millisecond)
	}
	b.wait("the last change in the table", `document.querySelector('#svc-body tr[data-id="web-1"]').cells[3].textContent === '`+fmt.Sprint(60+changes-1)+`s'`)
	// The test's own GETs: the two /limits.
	gets := used() - before - 2
	t.Logf("%d GETs for %d changes", gets, changes)
	if gets > 25 {
		t.Errorf("the page made %d GETs for %d changes at ten a second; want at most 25", gets, changes)
	}
}

// Events the registry deleted before the page read them (past
// --max-events, a 410 markerExpired) are lost: the page lists again and
// follows from there, and the feed says that events are missing there
// rather than read as if nothing had happened.
func TestUIFeedMarksLostEvents(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--max-events", "10")
	a := login(t, srv.url, "dev")
	b.signIn(srv.url, "dev", "dev")
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="events"]`)))
	must(t, a, "POST", "/services", map[string]any{"id": "first", "heartbeat_timeout": 120}, 201)
	// The page shows it, and asks the feed again a second later: the
	// 200 changes meanwhile push the events it has not read out.
	b.wait("the first event", `!!document.querySelector('#ev-list li[data-type="service.join"]')`)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if code, body, err := a.do("PUT", fmt.Sprintf("/configuration/burst_%03d", i), map[string]string{"value": "v"}); err != nil || code != 204 {
				t.Errorf("PUT: %d %s %v", code, body, err)
			}
		})
	}
	wg.Wait()
	b.wait("the configuration listed again", `document.getElementById('cfg-count').textContent === '200'`)
	b.wait("the lost events marked", `!!document.querySelector('#ev-list li.lost')`)
	b.set("ev-type", "service.join", "change")
	if b.text(`String(document.querySelector('#ev-list li.lost').hidden)`) != "false" {
		t.Error("a type filter hides the mark of lost events")
	}
}

// The history shown on sign-in is its first pages: past them (an account
// of more events in the last hour, with --max-events raised), the events
// up to the feed the page follows are not shown, and the view says so.
// Before, the newest of them was missing, the view topped by older ones.
func TestUIHistoryMarksWhereItStops(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--max-events", "20000", "--write-burst", "20000", "--config-limit", "1000")
	a := login(t, srv.url, "dev")
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1); i <= 11100; i = next.Add(1) {
				if code, body, err := a.do("PUT", fmt.Sprintf("/configuration/v_%03d", i%500), map[string]string{"value": fmt.Sprint(i)}); err != nil || code != 204 {
					t.Errorf("PUT: %d %s %v", code, body, err)
					return
				}
			}
		})
	}
	wg.Wait()
	must(t, a, "POST", "/services", map[string]any{"id": "newest", "heartbeat_timeout": 120}, 201)
	b.signIn(srv.url, "dev", "dev")
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="events"]`)))
	b.wait("the history", `document.querySelectorAll('#ev-list li').length > 0`)
	top := b.text(`(() => { const li = document.querySelector('#ev-list li'); return li.classList.contains('lost') ? 'lost' : li.querySelector('.what').textContent; })()`)
	if top != "lost" && top != "newest" {
		t.Errorf("the feed view is topped by %q: neither the newest event nor the mark of those not shown", top)
	}
}

// Configuration ids that differ only by an empty namespace segment ("//"),
// a trailing "/" or a leading "/" are different values: the tree does not
// show them as one name twice.
func TestUIConfigTreeTellsIDsApart(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	ids := []string{"/production/web/workers", "/production//web/workers", "/production/web//workers", "/production/web/workers/", "/feature", "feature"}
	for _, id := range ids {
		must(t, a, "PUT", "/configuration/"+id, map[string]string{"value": "v"}, 204)
	}
	b.signIn(srv.url, "dev", "dev")
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="config"]`)))
	b.wait("the configuration tree", `document.querySelectorAll('#cfg-tree li.leaf').length === 6`)
	// Each leaf as shown: its namespaces' names and its key, which the
	// reader sees (the title only on hovering).
	got := b.text(`JSON.stringify(Array.from(document.querySelectorAll('#cfg-tree li.leaf')).map(li => {
		const path = [];
		for (let d = li.parentElement.closest('details'); d; d = d.parentElement.closest('details')) path.unshift(d.querySelector('summary').textContent);
		return path.join('') + ' ' + li.querySelector('.k').textContent;
	}))`)
	var shownAs []string
	if err := json.Unmarshal([]byte(got), &shownAs); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range shownAs {
		if seen[s] {
			t.Errorf("two configuration values are shown as %q: %s", s, got)
		}
		seen[s] = true
	}
}

// The feed follows a next_marker without waiting: a long-poll does not
// count the event at its marker as new, so a page holding only that event
// was held for the whole wait (50 s). Here a burst of large updates, while
// the page gathers the feed after an answer, is cut by the 1 MiB page
// bound just before its last event.
func TestUIFeedFollowsANextMarkerAtOnce(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	meta := map[string]string{}
	for i := range 20 {
		meta[fmt.Sprintf("key-%02d", i)] = strings.Repeat("v", 220)
	}
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 100}, 201)
	b.signIn(srv.url, "dev", "dev")
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="events"]`)))
	b.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('ev-pause').click()`))
	b.wait("the feed paused", `document.getElementById('ev-pause').textContent === 'Resume'`)

	// The page has this one, and waits a second before it asks again.
	must(t, a, "PUT", "/services/web-1", map[string]any{"heartbeat_timeout": 101}, 204)
	b.wait("the first update", `document.getElementById('ev-pause').textContent === 'Resume (1 new)'`)
	shown := time.Now()
	var feed struct {
		Values []struct{ ID string }
	}
	if err := json.Unmarshal(must(t, a, "GET", "/events?limit=1000&include=service.update", nil, 200), &feed); err != nil {
		t.Fatal(err)
	}
	first := feed.Values[len(feed.Values)-1].ID
	// Updates until the page from the first is cut before the last: most
	// at once (the page's wait is a second), then one at a time.
	var count atomic.Int64
	update := func() {
		m := maps.Clone(meta)
		m["key-00"] = fmt.Sprintf("%0220d", count.Add(1)) // each an update
		must(t, a, "PUT", "/services/web-1", map[string]any{"heartbeat_timeout": 110, "metadata": m}, 204)
	}
	update()
	if err := json.Unmarshal(must(t, a, "GET", "/events?include=service.update&marker="+first, nil, 200), &feed); err != nil {
		t.Fatal(err)
	}
	size := len(must(t, a, "GET", "/events?include=service.update&marker="+feed.Values[1].ID, nil, 200))
	n := 1
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range (1<<20)/size/8 - 2 {
				update()
			}
		})
	}
	wg.Wait()
	n += 8 * ((1<<20)/size/8 - 2)
	for ; n < 400; n++ {
		var page struct {
			Metadata struct {
				NextMarker *string `json:"next_marker"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(must(t, a, "GET", "/events?limit=1000&include=service.update&marker="+first, nil, 200), &page); err != nil {
			t.Fatal(err)
		}
		if page.Metadata.NextMarker != nil {
			break
		}
		update()
	}
	t.Logf("%d updates written %v after the first was shown", n, time.Since(shown))
	want := fmt.Sprintf("Resume (%d new)", 1+n)
	start := time.Now()
	b.wait(want, `document.getElementById('ev-pause').textContent === `+js(want))
	t.Logf("%d updates, all shown %v after the last", n, time.Since(start))
}

// A next page that does not start with the event its next_marker named
// lost that event (the event cap or retention deleted it as the newest it
// deleted, which gets no 410): the page lists again and follows from
// there, as after a 410. A proxy in front of the server pages the feed two
// events at a time, holds the page's long-poll while a configuration
// value's update is written between service updates so that it is the
// next page's first event, and drops it from that page: only a list again
// shows the value.
func TestUIFeedListsAgainAfterALostNextMarkerEvent(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 100}, 201)

	var (
		mu      sync.Mutex
		hold    = true                   // the next long-poll waits for release
		held    = make(chan struct{}, 1) // a long-poll is held
		release = make(chan struct{})
		dropped atomic.Value // the id of the event dropped
	)
	proxy := pageProxy(t, srv.url)
	proxy.ModifyResponse = func(resp *http.Response) error {
		q := resp.Request.URL.Query()
		if !strings.HasSuffix(resp.Request.URL.Path, "/events") || q.Has("wait") || q.Get("marker") == "" || dropped.Load() != nil {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var page map[string]json.RawMessage
		var values []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		}
		var raw []json.RawMessage
		if json.Unmarshal(body, &page) == nil && json.Unmarshal(page["values"], &values) == nil && json.Unmarshal(page["values"], &raw) == nil &&
			len(values) > 0 && values[0].ID == q.Get("marker") && strings.HasPrefix(values[0].Type, "configuration_value.") {
			page["values"], _ = json.Marshal(raw[1:])
			body, _ = json.Marshal(page)
			dropped.Store(values[0].ID)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Accept-Encoding")
		if strings.HasSuffix(r.URL.Path, "/events") {
			q := r.URL.Query()
			if q.Get("limit") == "1000" {
				q.Set("limit", "2")
				r.URL.RawQuery = q.Encode()
			}
			mu.Lock()
			wait := q.Has("wait") && hold
			if wait {
				hold = false
			}
			mu.Unlock()
			if wait {
				held <- struct{}{}
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		front.CloseClientConnections() // the page's long-poll
		front.Close()
	})

	b.signIn(front.URL, "dev", "dev")
	select {
	case <-held:
	case <-time.After(browserTimeout):
		t.Fatal("the page's long-poll did not come")
	}
	for i, path := range []string{"/services/web-1", "/services/web-1", "/configuration/lost-value", "/services/web-1"} {
		if strings.HasPrefix(path, "/services/") {
			must(t, a, "PUT", path, map[string]any{"heartbeat_timeout": 101 + i}, 204)
		} else {
			must(t, a, "PUT", path, map[string]string{"value": "shown after a list again"}, 204)
		}
	}
	close(release)
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="config"]`)))
	b.wait("the configuration value whose event was dropped", `document.getElementById('view-config').textContent.includes('lost-value')`)
	if dropped.Load() == nil {
		t.Fatal("the proxy dropped no event: the page never asked for the page the value's update began")
	}
}

// A link to a service whose "id" is no service id (a sentence) shows no
// such heading: it would put whatever the link's maker wrote in the
// page's heading, above the dashboard's own words. An id of the API's
// form not registered is shown as the id it is.
func TestUIServiceLinkOfNoServiceID(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	b.signIn(srv.url, "dev", "dev")
	forged := "SECURITY NOTICE: this account is locked. Sign in again at https://evil.example/"
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#service/' + encodeURIComponent(` + strconv.Quote(forged) + `)`))
	b.wait("the service view", `!document.getElementById('view-service').hidden && document.getElementById('detail-id').textContent !== ''`)
	if got := b.text(`document.getElementById('detail-id').textContent`); got != "No such service" {
		t.Errorf("heading %q for a link of no service id; want \"No such service\"", got)
	}
	if body := b.text(`document.body.innerText`); strings.Contains(body, "SECURITY NOTICE") {
		t.Errorf("the link's text is on the page:\n%s", body)
	}
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#service/web-7'`))
	b.wait("the id's heading", `document.getElementById('detail-id').textContent === 'web-7'`)
}

// A long-poll that gets no answer at all (the server's host died, or a
// middlebox dropped the connection: nothing closes it) fails after its
// wait and 30 s, and the page says "reconnecting" and goes on, rather
// than wait on it for good saying "live".
func TestUIFeedPollWithoutAnswerReconnects(t *testing.T) {
	t.Parallel()
	b := newBrowserFor(t, 4*time.Minute) // the page gives up a poll after 80 s
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	proxy := pageProxy(t, srv.url)
	var held atomic.Bool
	given := make(chan struct{}) // the held poll's client gave it up
	stop := make(chan struct{})  // the test's end
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") && r.URL.Query().Has("wait") && held.CompareAndSwap(false, true) {
			select { // no answer, and the connection left open
			case <-r.Context().Done():
				close(given)
			case <-stop:
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(stop)
		front.CloseClientConnections()
		front.Close()
	})
	b.signIn(front.URL, "dev", "dev")
	b.do(chromedp.Evaluate[chromedp.Void](`window.states = [];
new MutationObserver(function () { window.states.push(document.getElementById('ev-state').textContent); })
	.observe(document.getElementById('ev-state'), { childList: true, characterData: true, subtree: true });`))
	select {
	case <-given:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the page still waits on a long-poll without an answer; states %s", b.text(`JSON.stringify(window.states)`))
	}
	b.wait("the page to say it reconnects, then live again", `(function () {
	var i = window.states.indexOf('reconnecting');
	return i >= 0 && window.states.slice(i).indexOf('live') >= 0 && document.getElementById('ev-state').textContent === 'live';
})()`)
}

// startStatusPage starts svcreg template on the registry of the --dev
// server at srvURL with templates (its config's [[template]] tables) and
// its status page on a free port, and returns the daemon and the page's
// address.
func startStatusPage(t *testing.T, srvURL, templates string) (*daemon, string) {
	t.Helper()
	port := freePort(t)
	config := filepath.Join(t.TempDir(), "render.toml")
	writeFile(t, config, fmt.Sprintf("listen = \"127.0.0.1:%d\"\n[wait]\nmin = \"20ms\"\nmax = \"200ms\"\n\n", port)+templates)
	return startDaemon(t, devEnv(srvURL), "--config", config), fmt.Sprintf("http://127.0.0.1:%d/", port)
}

// devEnv is the environment in which an svcreg command reads the registry
// of the --dev server at srvURL, as its user dev.
func devEnv(srvURL string) []string {
	return []string{"SVCREG_URL=" + srvURL + "/v1.0", "SVCREG_USERNAME=dev", "SVCREG_API_KEY=dev"}
}

// pageProxy is a reverse proxy to the server at rawURL, for a page's
// requests: the page's last long-poll, cut at the test's end, is not
// logged as the proxy's error.
func pageProxy(t *testing.T, rawURL string) *httputil.ReverseProxy {
	t.Helper()
	target, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	return proxy
}

// The services table shows a page of 100 services at a time, with
// Previous and Next: a table of every service took the browser 15 s to
// lay out at 10,000 services, and more than a second on every keystroke
// in the filter. The filter, the tag and the order apply to all of them,
// and a change of any shows their first page.
func TestUIServicesTableShowsAPage(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--service-limit", "250")
	a := login(t, srv.url, "dev")
	for i := range 250 {
		tags := []string{"www"}
		if i%50 == 0 {
			tags = append(tags, "every-50th")
		}
		must(t, a, "POST", "/services", map[string]any{"id": fmt.Sprintf("web-%03d", i), "heartbeat_timeout": 120, "tags": tags}, 201)
	}
	b.signIn(srv.url, "dev", "dev")
	state := `[document.querySelectorAll('#svc-body tr').length, document.querySelector('#svc-body tr') && document.querySelector('#svc-body tr').dataset.id,
		document.getElementById('svc-range').textContent, document.getElementById('svc-pager').hidden,
		document.getElementById('svc-prev').disabled, document.getElementById('svc-next').disabled].join('|')`
	b.wait("the first page", `document.getElementById('svc-count').textContent === '250'`)
	if got, want := b.text(state), "100|web-000|1\u2013100 of 250|false|true|false"; got != want {
		t.Fatalf("the first page: %s, want %s (rows|first|range|pager hidden|previous disabled|next disabled)", got, want)
	}
	b.do(chromedp.Click(chromedp.CSS("#svc-next")))
	if got, want := b.text(state), "100|web-100|101\u2013200 of 250|false|false|false"; got != want {
		t.Errorf("the second page: %s, want %s", got, want)
	}
	// A screen reader is told the page turned (the range itself, which
	// every service that comes or goes changes, is not read out).
	if got, want := b.text(`document.getElementById('svc-turned').textContent + '|' + (document.getElementById('svc-range').getAttribute('aria-live') || '')`), "Services 101\u2013200 of 250|"; got != want {
		t.Errorf("announced %q, want %q", got, want)
	}
	b.do(chromedp.Click(chromedp.CSS("#svc-next")))
	if got, want := b.text(state), "50|web-200|201\u2013250 of 250|false|false|true"; got != want {
		t.Errorf("the last page: %s, want %s", got, want)
	}
	// Sorted the other way: the first page of that order.
	b.do(chromedp.Click(chromedp.CSS(`#svc-table th button[data-sort="id"]`)))
	if got, want := b.text(state), "100|web-249|1\u2013100 of 250|false|true|false"; got != want {
		t.Errorf("sorted by id, descending: %s, want %s", got, want)
	}
	b.do(chromedp.Click(chromedp.CSS("#svc-next")))
	// The filter searches every service, not the page shown.
	b.set("svc-filter", "web-01", "input")
	if got, want := b.text(state), "10|web-019|1\u201310 of 10|true|true|true"; got != want {
		t.Errorf("filtered: %s, want %s", got, want)
	}
	b.set("svc-filter", "", "input")
	b.set("svc-tag", "every-50th", "change")
	if got, want := b.text(state), "5|web-200|1\u20135 of 5|true|true|true"; got != want {
		t.Errorf("by tag: %s, want %s", got, want)
	}
}

// The table takes a change from its event in the feed: a service that
// joins, changes or goes shows without a read of the services list,
// which at many services is many pages (each a GET the account's daily
// limit counts).
func TestUIServicesChangeFromTheFeed(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 120, "tags": []string{"www"}}, 201)
	must(t, a, "POST", "/services", map[string]any{"id": "db-1", "heartbeat_timeout": 120}, 201)
	front, lists := countingFront(t, srv.url, "/services")
	b.signIn(front.URL, "dev", "dev")
	b.wait("the services", `document.querySelectorAll('#svc-body tr').length === 2`)
	before := lists.Load()

	must(t, a, "PUT", "/services/web-1", map[string]any{"tags": []string{"www", "canary"}, "metadata": map[string]string{"version": "2"}}, 204)
	must(t, a, "POST", "/services", map[string]any{"id": "api-1", "heartbeat_timeout": 30}, 201)
	must(t, a, "DELETE", "/services/db-1", nil, 204)
	b.wait("the changes in the table", `(() => {
		const ids = Array.from(document.querySelectorAll('#svc-body tr')).map(tr => tr.dataset.id).join(',');
		const web = document.querySelector('#svc-body tr[data-id="web-1"]');
		return ids === 'api-1,web-1' && web.cells[1].textContent === 'wwwcanary' && web.cells[2].textContent === 'version2';
	})()`)
	if got := b.text(`document.querySelector('#svc-body tr[data-id="api-1"]').cells[4].textContent`); !strings.HasSuffix(got, "s") {
		t.Errorf("the joined service's countdown: %q", got)
	}
	if got, want := b.text(`Array.from(document.getElementById('svc-tag').options).map(o => o.value).join(',')`), ",canary,www"; got != want {
		t.Errorf("the tag filter offers %q, want %q", got, want)
	}
	// The feed's next answer comes a second after the last; a read of the
	// list made for these changes would be made by then.
	time.Sleep(3 * time.Second)
	if n := lists.Load() - before; n != 0 {
		t.Errorf("the page read the services list %d times for three changes its feed brought", n)
	}
}

// The configuration takes a change from its event in the feed, as the
// services do: a value that is set, added or removed shows without a
// read of the configuration list (a GET for each 1000 values, which at
// 20,000 values changing a few times a second spent the account's daily
// limit in hours), and a namespace the user closed stays closed.
func TestUIConfigChangesFromTheFeed(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "PUT", "/configuration//production/web/workers", map[string]string{"value": "8"}, 204)
	must(t, a, "PUT", "/configuration//production/database/pool", map[string]string{"value": "20"}, 204)
	must(t, a, "PUT", "/configuration//staging/web/workers", map[string]string{"value": "2"}, 204)
	front, lists := countingFront(t, srv.url, "/configuration")
	b.signIn(front.URL, "dev", "dev")
	b.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="config"]`)))
	b.wait("the configuration", `document.querySelectorAll('#cfg-tree li.leaf').length === 3`)
	before := lists.Load()
	// The user closes /staging.
	b.do(chromedp.Evaluate[chromedp.Void](`Array.from(document.querySelectorAll('#cfg-tree details')).find(d => d.querySelector('summary').textContent === '/staging').open = false`))

	must(t, a, "PUT", "/configuration//production/web/workers", map[string]string{"value": "16"}, 204)
	must(t, a, "PUT", "/configuration//production/web/port", map[string]string{"value": "8080"}, 204)
	must(t, a, "DELETE", "/configuration//production/database/pool", nil, 204)
	b.wait("the changes in the tree", `(() => {
		const v = id => { const li = document.querySelector('#cfg-tree li.leaf[title="' + id + '"]'); return li ? li.querySelector('.v').textContent : null; };
		return v('/production/web/workers') === '16' && v('/production/web/port') === '8080' && v('/production/database/pool') === null &&
			document.getElementById('cfg-count').textContent === '3';
	})()`)
	if got := b.text(`Array.from(document.querySelectorAll('#cfg-tree details')).filter(d => !d.open).map(d => d.querySelector('summary').textContent).join()`); got != "/staging" {
		t.Errorf("the namespaces closed after the changes: %q, want /staging", got)
	}
	// The feed's next answer comes a second after the last; a read of the
	// list made for these changes would be made by then.
	time.Sleep(3 * time.Second)
	if n := lists.Load() - before; n != 0 {
		t.Errorf("the page read the configuration list %d times for three changes its feed brought", n)
	}
}

// heartbeat heartbeats the service id, whose token is token, now and then
// every 500 ms until the test ends.
func heartbeat(t *testing.T, a *api, id, token string) {
	t.Helper()
	var first struct{ Token string }
	if err := json.Unmarshal(must(t, a, "POST", "/services/"+id+"/heartbeat", map[string]string{"token": token}, 200), &first); err != nil || first.Token == "" {
		t.Fatalf("heartbeat of %s: no token (%v)", id, err)
	}
	token = first.Token
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			var next struct{ Token string }
			_, body, _ := a.do("POST", "/services/"+id+"/heartbeat", map[string]string{"token": token})
			if json.Unmarshal(body, &next) == nil && next.Token != "" {
				token = next.Token
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// A service's detail counts down to its next deadline when the service is
// not in the table's page (another page, or filtered out): its countdown
// at zero reads the list again, which tells its last heartbeat, as in the
// table. Before, only the table's rows did, and a heartbeated service's
// detail stayed at 0s.
func TestUIServiceDetailCountdownOfAServiceNotInTheTable(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 120}, 201)
	var created struct{ Token string }
	json.Unmarshal(must(t, a, "POST", "/services", map[string]any{"id": "beat-1", "heartbeat_timeout": 4}, 201), &created)
	heartbeat(t, a, "beat-1", created.Token)
	b.signIn(srv.url, "dev", "dev")
	b.set("svc-filter", "web", "input")
	b.wait("the filtered table", `Array.from(document.querySelectorAll('#svc-body tr')).map(r => r.dataset.id).join() === 'web-1'`)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#service/beat-1'`))
	b.wait("the heartbeated countdown going up", `(() => {
		const c = document.getElementById('detail-left');
		if (!c || !/^[0-9]+s$/.test(c.textContent)) return false;
		const n = parseInt(c.textContent, 10);
		window.lowest = Math.min(window.lowest === undefined ? 99 : window.lowest, n);
		return n > window.lowest;
	})()`)
}

// The pager works from the keyboard: Next to the last page and Previous
// back to the first keep the focus on the pager, though the button
// pressed is then disabled (a disabled button loses the focus, to the
// page's top, and the next Tab starts from there).
func TestUIServicesPagerKeepsTheFocus(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--service-limit", "250")
	a := login(t, srv.url, "dev")
	for i := range 101 {
		must(t, a, "POST", "/services", map[string]any{"id": fmt.Sprintf("web-%03d", i), "heartbeat_timeout": 120}, 201)
	}
	b.signIn(srv.url, "dev", "dev")
	b.wait("the first page", `document.getElementById('svc-count').textContent === '101' && !document.getElementById('svc-pager').hidden`)
	b.do(chromedp.Focus(chromedp.CSS("#svc-next")), chromedp.KeyEvent("\r"))
	b.wait("the last page", `document.getElementById('svc-range').textContent === '101\u2013101 of 101'`)
	if got := b.text(`document.activeElement.id || document.activeElement.tagName`); got != "svc-prev" {
		t.Errorf("the focus after Next to the last page is on %s, want svc-prev", got)
	}
	b.do(chromedp.KeyEvent("\r"))
	b.wait("the first page again", `document.getElementById('svc-range').textContent === '1\u2013100 of 101'`)
	if got := b.text(`document.activeElement.id || document.activeElement.tagName`); got != "svc-next" {
		t.Errorf("the focus after Previous to the first page is on %s, want svc-next", got)
	}
}

// A new heartbeat timeout applies from the next heartbeat (spec §7.5):
// until then the service keeps its deadline, and its countdown does not
// jump to that of the new timeout. Before, a shorter one showed 0s for a
// service with two minutes left, and read the list again every 2 s for
// them.
func TestUIServiceTimeoutChangeAppliesFromTheNextHeartbeat(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	var created struct{ Token string }
	json.Unmarshal(must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 120}, 201), &created)
	must(t, a, "POST", "/services/web-1/heartbeat", map[string]string{"token": created.Token}, 200)
	front, lists := countingFront(t, srv.url, "/services")
	b.signIn(front.URL, "dev", "dev")
	cell := `document.querySelector('#svc-body tr[data-id="web-1"]').cells`
	b.wait("the service", `!!document.querySelector('#svc-body tr[data-id="web-1"]')`)
	before := lists.Load()
	must(t, a, "PUT", "/services/web-1", map[string]any{"heartbeat_timeout": 3}, 204)
	b.wait("the change", cell+`[3].textContent === '3s'`)
	time.Sleep(6 * time.Second)
	must(t, a, "GET", "/services/web-1", nil, 200) // not timed out
	if got := b.text(cell + `[4].textContent`); !strings.HasSuffix(got, "s") || atoiOr0(strings.TrimSuffix(got, "s")) < 90 {
		t.Errorf("the countdown after the timeout's change is %q; the service times out in some 110 s", got)
	}
	if n := lists.Load() - before; n > 1 {
		t.Errorf("the page read the services list %d times in 6 s for a countdown at zero it should not be at", n)
	}
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// A service deleted and registered again with the same id, then
// heartbeated, keeps its heartbeat when the list read after it came in
// before the events of the delete and the join: the remove is of the
// service before (a heartbeat of the one removed is older than its
// removal), and the page no longer counts down from the join.
func TestUIServiceRegisteredAgainKeepsItsHeartbeat(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 60}, 201)
	// Its countdown at zero makes the page read the list again, every
	// few seconds.
	var short struct{ Token string }
	json.Unmarshal(must(t, a, "POST", "/services", map[string]any{"id": "short-1", "heartbeat_timeout": 3}, 201), &short)
	heartbeat(t, a, "short-1", short.Token)

	front, waitHeld, release := holdFirstPoll(t, srv.url)
	b.signIn(front.URL, "dev", "dev")
	waitHeld()
	must(t, a, "DELETE", "/services/web-1", nil, 204)
	var created struct{ Token string }
	json.Unmarshal(must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 60}, 201), &created)
	time.Sleep(4 * time.Second)
	must(t, a, "POST", "/services/web-1/heartbeat", map[string]string{"token": created.Token}, 200)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#service/web-1'`))
	lastSeen := `JSON.parse(document.getElementById('detail-json').textContent || '{}').last_seen`
	b.wait("the list read again, with the heartbeat", `typeof `+lastSeen+` === 'number'`)
	// A list read again soon puts it right: whether the events lost it
	// is watched as they are applied.
	b.do(chromedp.Evaluate[chromedp.Void](`window.lost = false;
new MutationObserver(function () { if (` + lastSeen + ` === null) window.lost = true; })
	.observe(document.getElementById('detail-json'), { childList: true, characterData: true, subtree: true });`))
	close(release)
	b.wait("the events applied", `Array.from(document.querySelectorAll('#ev-list li')).some(li => li.dataset.type === 'service.remove')`)
	time.Sleep(500 * time.Millisecond)
	if b.text(`String(window.lost)`) != "false" {
		t.Error("the events of the delete and the join made the service's last heartbeat null; the list read after them had it")
	}
}

// holdFirstPoll is a front to the server at srvURL whose first long-poll
// waits until release is closed; waitHeld waits until it came.
func holdFirstPoll(t *testing.T, srvURL string) (front *httptest.Server, waitHeld func(), release chan struct{}) {
	t.Helper()
	var once sync.Once
	h := make(chan struct{}, 1)
	release = make(chan struct{})
	proxy := pageProxy(t, srvURL)
	front = pageFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") && r.URL.Query().Has("wait") {
			first := false
			once.Do(func() { first = true })
			if first {
				h <- struct{}{}
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	waitHeld = func() {
		t.Helper()
		select {
		case <-h:
		case <-time.After(browserTimeout):
			t.Fatal("the page's long-poll did not come")
		}
	}
	return front, waitHeld, release
}

// pageFront serves h in front of a server for a page, until the test's
// end (its connections closed first: the page's long-poll).
func pageFront(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	front := httptest.NewServer(h)
	t.Cleanup(func() {
		front.CloseClientConnections()
		front.Close()
	})
	return front
}

// countingFront is a front to the server at srvURL that counts the page's
// reads of the list whose path ends in suffix.
func countingFront(t *testing.T, srvURL, suffix string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	proxy := pageProxy(t, srvURL)
	return pageFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, suffix) {
			n.Add(1)
		}
		proxy.ServeHTTP(w, r)
	})), &n
}

// A tag that goes while the table shows its services (the last of them
// changed or gone) leaves the tag filter at all tags: the table then
// shows their first page, as after any change of the filter, not the
// page it was at in the tag's services.
func TestUIServicesTagGoneShowsTheFirstPage(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--service-limit", "250")
	a := login(t, srv.url, "dev")
	for i := range 120 {
		must(t, a, "POST", "/services", map[string]any{"id": fmt.Sprintf("web-%03d", i), "heartbeat_timeout": 120, "tags": []string{"blue"}}, 201)
	}
	front, waitHeld, release := holdFirstPoll(t, srv.url)
	b.signIn(front.URL, "dev", "dev")
	waitHeld()
	b.set("svc-tag", "blue", "change")
	b.do(chromedp.Click(chromedp.CSS("#svc-next")))
	b.wait("the second page of the tag", `document.getElementById('svc-range').textContent === '101\u2013120 of 120'`)
	var wg sync.WaitGroup
	for i := range 120 {
		wg.Go(func() {
			if code, body, err := a.do("PUT", fmt.Sprintf("/services/web-%03d", i), map[string]any{"tags": []string{"green"}}); err != nil || code != 204 {
				t.Errorf("PUT: %d %s %v", code, body, err)
			}
		})
	}
	wg.Wait()
	close(release)
	b.wait("the tag gone", `document.getElementById('svc-tag').value === '' && document.getElementById('svc-tag').options.length === 2`)
	if got, want := b.text(`document.getElementById('svc-range').textContent`), "1\u2013100 of 120"; got != want {
		t.Errorf("the table shows %q after its tag went, want %q (the first page)", got, want)
	}
}

// A service event whose tags or metadata values are not strings (no
// svcreg server sends one: the registry holds strings) leaves those out
// and the page following the feed: before, making the row's text threw,
// and the page stopped following while it still said "live".
func TestUIServiceEventOfNoStringsKeepsTheFeed(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	srv := startServerProcess(t, "--data-dir", t.TempDir())
	a := login(t, srv.url, "dev")
	must(t, a, "POST", "/services", map[string]any{"id": "web-1", "heartbeat_timeout": 120}, 201)
	proxy := pageProxy(t, srv.url)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "/events") || !resp.Request.URL.Query().Has("wait") {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		body = bytes.ReplaceAll(body, []byte(`"tags":["www"]`), []byte(`"tags":["www",{"toString":1},7]`))
		body = bytes.ReplaceAll(body, []byte(`"metadata":{"v":"1"}`), []byte(`"metadata":{"v":"1","w":{"toString":1},"__proto__":"p"}`))
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	front := pageFront(t, proxy)
	b.signIn(front.URL, "dev", "dev")
	row := `document.querySelector('#svc-body tr[data-id="web-1"]')`
	b.wait("the service", `!!`+row)
	must(t, a, "PUT", "/services/web-1", map[string]any{"tags": []string{"www"}, "metadata": map[string]string{"v": "1"}}, 204)
	b.wait("the change", row+`.cells[1].textContent === 'www'`)
	if got, want := b.text(row+`.cells[2].textContent`), "__proto__pv1"; got != want {
		t.Errorf("metadata shown as %q, want %q", got, want)
	}
	must(t, a, "PUT", "/services/web-1", map[string]any{"tags": []string{"next"}}, 204)
	b.wait("the change after it", row+`.cells[1].textContent === 'next'`)
}
