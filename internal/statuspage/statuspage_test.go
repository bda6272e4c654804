package statuspage

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testfs"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
	"github.com/svcreg/svcreg/watcher"
)

const hostile = `<script>alert(1)</script>`

// renderer runs one real pass: group "lb" installs a file holding hostile
// registry data; group "broken" fails its check with hostile text.
func renderer(t *testing.T) (*render.Health, *render.Status) {
	t.Helper()
	dir := testfs.SearchableTempDir(t)
	c := render.Config{Templates: []render.TemplateConfig{
		{Contents: "{{ range services }}# {{ .Metadata.note }}\n{{ end }}", Destination: filepath.Join(dir, "lb.conf"), ReloadGroup: "lb"},
		{Contents: "x", Destination: filepath.Join(dir, "broken.conf"), ReloadGroup: "broken", Check: "echo '<img src=x onerror=alert(2)>' >&2; false"},
	}}
	return pass(t, c, watcher.NewSnapshot([]registry.Service{{ID: "web-1", Metadata: map[string]string{"note": hostile}, HeartbeatTimeout: 30}}, nil, "m", time.Now()))
}

// pass runs one real pass of the templates of c over snap.
func pass(t *testing.T, c render.Config, snap *watcher.Snapshot) (*render.Health, *render.Status) {
	t.Helper()
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	set, err := render.NewSet(c)
	if err != nil {
		t.Fatal(err)
	}
	health, status := render.NewHealth(), render.NewStatus()
	r := render.NewRenderer(nil, nil, health)
	r.Status = status
	r.Pass(context.Background(), set, snap)
	return health, status
}

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Result(), string(b)
}

func TestPageShowsStepsAndDiffAsTextAndNoSecret(t *testing.T) {
	t.Parallel()
	health, status := renderer(t)
	h := Handler(Config{Health: health, Status: status, Account: "renderer",
		Registry: "https://renderer:s3cret-key@registry.example:8420/v1.0?x-auth-token=tok-123#tok-456"})
	resp, body := get(t, h, "GET", "/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != ContentSecurityPolicy {
		t.Fatalf("status %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	for _, secret := range []string{"s3cret-key", "tok-123", "tok-456"} {
		if strings.Contains(body, secret) {
			t.Errorf("the page shows the secret %q", secret)
		}
	}
	for _, want := range []string{
		`<dd class="mono" id="registry-url">https://registry.example:8420/v1.0</dd>`,
		`<dd id="account">renderer</dd>`,
		`<section class="card group" data-group="lb">`,
		`+# &lt;script&gt;alert(1)&lt;/script&gt;`,
		`&lt;img src=x onerror=alert(2)&gt;`,
		`<td class="result failed">failed</td>`,
		"2 renders in the last hour",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "<img"} {
		if strings.Contains(body, bad) {
			t.Errorf("registry or command text became markup: %q in the page", bad)
		}
	}
}

// A file not every user may read (perms = "0600": a secret from the
// configuration) is not shown on a page without a login: its change is
// line and byte counts.
func TestPageHidesPrivateFiles(t *testing.T) {
	t.Parallel()
	dest := filepath.Join(testfs.SearchableTempDir(t), "userlist.cfg")
	c := render.Config{Templates: []render.TemplateConfig{{
		Contents:    "userlist admins\n  user admin insecure-password {{ config \"/lb/admin_password\" }}\n",
		Destination: dest, Perms: "0600", ReloadGroup: "lb"}}}
	health, status := pass(t, c, watcher.NewSnapshot(nil, []registry.ConfigValue{{ID: "/lb/admin_password", Value: "s3cret-Pa55"}}, "m", time.Now()))
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("destination: %v %v", fi, err)
	}
	_, body := get(t, Handler(Config{Health: health, Status: status}), "GET", "/")
	if i := strings.Index(body, "s3cret-Pa55"); i >= 0 {
		t.Fatalf("the page shows the content of a 0600 file: …%s…", body[max(0, i-80):i+20])
	}
	if want := "@@ 0 lines, 0 bytes -&gt; 2 lines, 59 bytes @@ (mode 0600: not shown)"; !strings.Contains(body, want) {
		t.Errorf("the page lacks %q", want)
	}
}

// Nor is what a failed check says about such a file: nginx -t and
// haproxy -c quote the token they trip on. It goes to the log only.
func TestPageHidesPrivateFilesInCheckOutput(t *testing.T) {
	t.Parallel()
	dest := filepath.Join(testfs.SearchableTempDir(t), "api.conf")
	c := render.Config{Templates: []render.TemplateConfig{{
		Contents:    "location / {\n  proxy_set_header X-Api-Key {{ config \"/lb/api_key\" }};\n}\n",
		Destination: dest, Perms: "0600", ReloadGroup: "lb",
		// What nginx -t prints for line 2: the token after the ';'.
		Check: `tok=$(sed -n 2p {{.Staged}} | cut -d';' -f2); echo "nginx: [emerg] unknown directive \"$tok\" in {{.Staged}}:2"; exit 1`}}}
	health, status := pass(t, c, watcher.NewSnapshot(nil, []registry.ConfigValue{{ID: "/lb/api_key", Value: "s3cr;et-Pa55"}}, "m", time.Now()))
	failedCheckShowsNo(t, health, status, "et-Pa55")
}

func TestPageBeforeTheFirstPass(t *testing.T) {
	t.Parallel()
	h := Handler(Config{Health: render.NewHealth(), Status: render.NewStatus(), Registry: "http://r/v1.0", Account: "a token (tenant 7)"})
	resp, body := get(t, h, "GET", "/")
	if resp.StatusCode != 200 || !strings.Contains(body, "No group has been rendered yet") || !strings.Contains(body, ">unsynced<") ||
		strings.Count(body, ">nothing in the last hour</text>") != 2 {
		t.Fatalf("%d\n%s", resp.StatusCode, body)
	}
}

// With the URLs of several nodes, the page names the one in use, without
// its password; with one, it names none.
func TestPageShowsTheURLInUse(t *testing.T) {
	t.Parallel()
	inUse := func() string { return "http://u:s3cret@b.example:8420" }
	_, body := get(t, Handler(Config{Health: render.NewHealth(), Status: render.NewStatus(),
		Registry: "http://a.example:8420,http://u:s3cret@b.example:8420", InUse: inUse}), "GET", "/")
	if !strings.Contains(body, `<dd class="mono" id="registry-in-use">http://b.example:8420</dd>`) || strings.Contains(body, "s3cret") {
		t.Errorf("the page does not name the URL in use, or shows its password:\n%s", body)
	}
	for _, one := range []string{"http://b.example:8420", "http://b.example:8420/a,b/v1.0"} {
		_, body = get(t, Handler(Config{Health: render.NewHealth(), Status: render.NewStatus(), Registry: one, InUse: inUse}), "GET", "/")
		if strings.Contains(body, "registry-in-use") {
			t.Errorf("with one URL, %s, the page names one in use:\n%s", one, body)
		}
	}
}

func TestPageRoutes(t *testing.T) {
	t.Parallel()
	h := Handler(Config{Health: render.NewHealth(), Status: render.NewStatus()})
	for _, c := range []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "/status.css", 200, "text/css; charset=utf-8"},
		{"HEAD", "/", 200, "text/html; charset=utf-8"},
		{"GET", "/nope", 404, "text/plain; charset=utf-8"},
		{"POST", "/", 405, "text/plain; charset=utf-8"},
	} {
		resp, _ := get(t, h, c.method, c.path)
		if resp.StatusCode != c.code || resp.Header.Get("Content-Type") != c.ctype || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s %s: %d %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// On a loopback listener only requests addressed by IP address or
// localhost are served: a page that points a DNS name at 127.0.0.1 (DNS
// rebinding) cannot read the status page by it.
func TestLoopbackOnly(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	loopback := LoopbackOnly(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8421}, ok)
	other := LoopbackOnly(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8421}, ok)
	// On a listener on every address, a request that reached loopback is
	// checked; one that reached another address is not.
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	every := LoopbackOnly(&net.TCPAddr{IP: net.IPv6unspecified, Port: 8421}, ok)
	at := func(ip net.IP) *net.TCPAddr { return &net.TCPAddr{IP: ip, Port: 8421} }
	for _, tc := range []struct {
		h     http.Handler
		host  string
		want  int
		local *net.TCPAddr // the address the request reached; the listener's if nil
	}{
		{every, "evil.example:8421", http.StatusMisdirectedRequest, at(net.IPv4(127, 0, 0, 1))},
		{every, "evil.example:8421", http.StatusMisdirectedRequest, at(net.IPv6loopback)},
		{every, "127.0.0.1:8421", http.StatusNoContent, at(net.IPv4(127, 0, 0, 1))},
		{every, "lb1.example:8421", http.StatusNoContent, at(net.IPv4(10, 0, 0, 1))},
		{every, hostname + ":8421", http.StatusNoContent, at(net.IPv4(127, 0, 1, 1))},
		{loopback, "", http.StatusNoContent, nil},
		{loopback, "127.0.0.1:8421", http.StatusNoContent, nil},
		{loopback, "[::1]:8421", http.StatusNoContent, nil},
		{loopback, "localhost:8421", http.StatusNoContent, nil},
		{loopback, "LOCALHOST", http.StatusNoContent, nil},
		{loopback, "evil.example:8421", http.StatusMisdirectedRequest, nil},
		{loopback, "localhost.evil.example", http.StatusMisdirectedRequest, nil},
		{other, "lb1.example:8421", http.StatusNoContent, nil},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tc.host
		if tc.local != nil {
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, tc.local))
		}
		w := httptest.NewRecorder()
		tc.h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("Host %s: %d, want %d", tc.host, w.Code, tc.want)
		}
	}
}

// A --dev server answers only requests that name it by address,
// localhost, the machine's host name or a name without a dot (a
// container's, as the examples' "registry"), whatever address they reached:
// in a container published on the host's loopback, requests reach the
// container's own address, by which LoopbackOnly lets any name through.
func TestAddressedOnly(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := AddressedOnly(ok)
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	container := &net.TCPAddr{IP: net.IPv4(172, 17, 0, 2), Port: 8420}
	for _, tc := range []struct {
		host  string
		want  int
		local *net.TCPAddr
	}{
		{"rebind.evil.example:8420", http.StatusMisdirectedRequest, container},
		{"rebind.evil.example:8420", http.StatusMisdirectedRequest, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8420}},
		{"localhost.evil.example", http.StatusMisdirectedRequest, container},
		{"evil.example.:8420", http.StatusMisdirectedRequest, container},
		{"registry.:8420", http.StatusMisdirectedRequest, container},
		{"registry:8420", http.StatusNoContent, container},
		{"registry", http.StatusNoContent, container},
		{"localhost:8420", http.StatusNoContent, container},
		{"172.17.0.2:8420", http.StatusNoContent, container},
		{"[fe80::1%25eth0]:8420", http.StatusNoContent, container},
		{hostname + ":8420", http.StatusNoContent, container},
		{"", http.StatusNoContent, container},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tc.host
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, tc.local))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("Host %s reaching %v: %d, want %d", tc.host, tc.local, w.Code, tc.want)
		}
	}
}

// Templates that could not be re-read are shown, with the error as text,
// while the ones in use go on.
func TestPageShowsTemplatesNotLoaded(t *testing.T) {
	t.Parallel()
	dir := testfs.SearchableTempDir(t)
	src := filepath.Join(dir, "t.tmpl")
	os.WriteFile(src, []byte("ok"), 0o644)
	load := func() (render.Config, error) {
		c := render.Config{Templates: []render.TemplateConfig{{Source: src, Destination: filepath.Join(dir, "out")}}}
		return c, c.Normalize()
	}
	c, _ := load()
	set, err := render.NewSet(c)
	if err != nil {
		t.Fatal(err)
	}
	health := render.NewHealth()
	rl := render.NewReloader(nil, load, make(chan *render.Set), set)
	rl.Health = health
	os.WriteFile(src, []byte("{{ <b>"), 0o644)
	rl.Reload(context.Background(), "template file changed")
	_, body := get(t, Handler(Config{Health: health, Status: render.NewStatus(), Registry: "http://r/v1.0"}), "GET", "/")
	for _, want := range []string{`id="templates-not-loaded"`, "(template file changed, ", "the ones in use are kept", "the templates could not be read or parsed", "t.tmpl:1"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>") {
		t.Error("the error became markup")
	}
}

// A failed check's error quotes the lines of the staged file its output
// names ("[FILE:LINE]", as haproxy -c writes): for a file not every user
// may read, the page must not show them either.
func TestPageHidesPrivateFilesInCheckErrors(t *testing.T) {
	t.Parallel()
	dest := filepath.Join(testfs.SearchableTempDir(t), "userlist.cfg")
	c := render.Config{Templates: []render.TemplateConfig{{
		Contents:    "userlist admins\n  user admin insecure-password {{ config \"/lb/admin_password\" }}\n",
		Destination: dest, Perms: "0600", ReloadGroup: "lb",
		Check: `echo "[ALERT] parsing [{{.Staged}}:2] : unknown keyword"; exit 1`}}}
	health, status := pass(t, c, watcher.NewSnapshot(nil, []registry.ConfigValue{{ID: "/lb/admin_password", Value: "s3cret-Pa55"}}, "m", time.Now()))
	_, body := get(t, Handler(Config{Health: health, Status: status}), "GET", "/")
	if !strings.Contains(body, "unknown keyword") {
		t.Fatalf("the page does not show the failed check")
	}
	if i := strings.Index(body, "s3cret-Pa55"); i >= 0 {
		t.Fatalf("the page shows the content of a 0600 file: …%s…", body[max(0, i-120):i+20])
	}
}

// A check reads every file of its group, the unchanged ones at their
// destination: what it quotes of an unchanged 0600 file must not reach
// /healthz or the status page either.
func TestPageHidesUnchangedPrivateFileInCheckOutput(t *testing.T) {
	t.Parallel()
	dir := testfs.SearchableTempDir(t)
	private, public := filepath.Join(dir, "api.conf"), filepath.Join(dir, "upstreams.conf")
	check := `if cat {{range .Files}}{{.Staged}} {{end}} | grep -q bad; then tok=$(sed -n 2p ` + private + ` | cut -d';' -f2); echo "nginx: [emerg] host not found in upstream \"$tok\" in ` + private + `:2"; exit 1; fi`
	c := render.Config{Templates: []render.TemplateConfig{
		{Contents: "location / {\n  proxy_set_header X-Api-Key {{ config \"/lb/api_key\" }};\n}\n",
			Destination: private, Perms: "0600", ReloadGroup: "lb", Check: check},
		{Contents: "{{ range services }}server {{ .ID }};\n{{ end }}", Destination: public, ReloadGroup: "lb"},
	}}
	cfg := []registry.ConfigValue{{ID: "/lb/api_key", Value: "s3cr;et-Pa55"}}
	// The first pass installs both; the second changes only the public one.
	pass(t, c, watcher.NewSnapshot([]registry.Service{{ID: "good", HeartbeatTimeout: 30}}, cfg, "m", time.Now()))
	health, status := pass(t, c, watcher.NewSnapshot([]registry.Service{{ID: "bad", HeartbeatTimeout: 30}}, cfg, "m", time.Now()))
	failedCheckShowsNo(t, health, status, "et-Pa55")
}

// A reload that parses the files quotes them as a check does (HAProxy
// started anew with -f, a group without a check): what it quotes of a
// 0600 file reaches neither /healthz nor the status page, first reload or
// the rollback's.
func TestPageHidesPrivateFileInReloadOutput(t *testing.T) {
	t.Parallel()
	dir := testfs.SearchableTempDir(t)
	dest := filepath.Join(dir, "secret.conf")
	c := render.Config{Templates: []render.TemplateConfig{{
		Contents:    "password {{ config \"/prod/secret\" }};\n",
		Destination: dest, Perms: "0600", ReloadGroup: "lb",
		Reload: `echo "nginx: [emerg] unknown directive \"$(cat ` + dest + `)\" in ` + dest + `:1"; exit 1`}}}
	// The installed file, which the rollback puts back and reloads.
	if err := os.WriteFile(dest, []byte("password hunter2-first;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	health, status := pass(t, c, watcher.NewSnapshot(nil, []registry.ConfigValue{{ID: "/prod/secret", Value: "hunter2-second"}}, "m", time.Now()))
	_, page := get(t, Handler(Config{Health: health, Status: status}), "GET", "/")
	_, hz := get(t, health, "GET", "/healthz")
	_, second, _ := strings.Cut(hz, "reloading them failed too")
	if !strings.Contains(hz, "not shown: it may quote a file not every user may read; see the log); restored") || !strings.Contains(second, "not shown: it may quote a file not every user may read") {
		t.Errorf("/healthz does not say both reloads' output is not shown:\n%s", hz)
	}
	for name, body := range map[string]string{"status page": page, "/healthz": hz} {
		for _, secret := range []string{"hunter2-first", "hunter2-second"} {
			if i := strings.Index(body, secret); i >= 0 {
				t.Errorf("%s shows the content of a 0600 file: …%s…", name, body[max(0, i-100):i+20])
			}
		}
	}
}

// failedCheckShowsNo fails t if the status page, which must show a failed
// check, or /healthz shows secret.
func failedCheckShowsNo(t *testing.T, health *render.Health, status *render.Status, secret string) {
	t.Helper()
	_, page := get(t, Handler(Config{Health: health, Status: status}), "GET", "/")
	_, hz := get(t, health, "GET", "/healthz")
	if !strings.Contains(page, "exit status 1") {
		t.Fatalf("the page does not show the failed check")
	}
	for name, body := range map[string]string{"status page": page, "/healthz": hz} {
		if i := strings.Index(body, secret); i >= 0 {
			t.Errorf("%s shows the content of a 0600 file: …%s…", name, body[max(0, i-100):i+20])
		}
	}
}

// The page lists the refusals of the last render: a service by its id, a
// configuration value configAs refused by its id, without the value (it
// may be a secret), as text.
func TestPageShowsRefusals(t *testing.T) {
	t.Parallel()
	dir := testfs.SearchableTempDir(t)
	c := render.Config{Templates: []render.TemplateConfig{{
		Contents:    `{{range endpoints services}}{{.HostPort}} {{metaAs . "w" "1" "weight"}}{{end}} {{configAs "/lb/<b>" "16" "number" 1 100}}`,
		Destination: filepath.Join(dir, "lb.conf"), ReloadGroup: "lb"}}}
	snap := watcher.NewSnapshot(
		[]registry.Service{
			{ID: "evil-1", Metadata: map[string]string{"ip": "10.0.0.1", "port": "80" + hostile}, HeartbeatTimeout: 30},
			{ID: "kept-1", Metadata: map[string]string{"ip": "10.0.0.2", "port": "80", "w": "x" + hostile}, HeartbeatTimeout: 30},
		},
		[]registry.ConfigValue{{ID: "/lb/<b>", Value: "s3cret-" + hostile}}, "m", time.Now())
	health, status := pass(t, c, snap)
	_, body := get(t, Handler(Config{Health: health, Status: status}), "GET", "/")
	for _, want := range []string{
		`<span class="mono">evil-1</span>`,
		`port &#34;80&lt;script&gt;alert(1)&lt;/script&gt;&#34; refused`,
		`configuration value <span class="mono">/lb/&lt;b&gt;</span>`,
		`refused by number: not a number in 1..100`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "<b>", "s3cret"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page shows %q", bad)
		}
	}
	// A service left out says so; one whose metadata value's default was
	// used (metaAs) does not.
	seen := map[string]bool{}
	for _, li := range strings.Split(body, "<li>")[1:] {
		li, _, _ = strings.Cut(li, "</li>")
		switch {
		case strings.Contains(li, "evil-1"):
			seen["evil-1"] = true
			if !strings.HasSuffix(li, "(left out)") {
				t.Errorf("the service left out: %q; want it marked so", li)
			}
		case strings.Contains(li, "kept-1"):
			seen["kept-1"] = true
			if strings.Contains(li, "left out") || !strings.Contains(li, "the template&#39;s default") {
				t.Errorf("the service kept with a default: %q", li)
			}
		}
	}
	if !seen["evil-1"] || !seen["kept-1"] {
		t.Errorf("the refusals are not list items of the page (found %v)", seen)
	}
	if !strings.Contains(body, "kept-1") {
		t.Error("the page lacks the metadata value refused")
	}
}

// Registry text that would show as other text (a right-to-left override
// makes "08:1.0.0.01" read "10.0.0.1:80"; a zero-width space hides) is
// shown escaped, in the installed change and in a step's error alike.
func TestPageShowsInvisibleCharactersEscaped(t *testing.T) {
	t.Parallel()
	dir := testfs.SearchableTempDir(t)
	c := render.Config{Templates: []render.TemplateConfig{
		{Contents: "{{ range services }}server {{ .Metadata.note }}\n{{ end }}", Destination: filepath.Join(dir, "lb.conf"), ReloadGroup: "lb"},
		{Contents: "x", Destination: filepath.Join(dir, "broken.conf"), ReloadGroup: "broken", Check: "printf 'bad \\342\\200\\256gnirts\\n' >&2; false"},
	}}
	health, status := pass(t, c, watcher.NewSnapshot([]registry.Service{
		{ID: "web-1", Metadata: map[string]string{"note": "web-1 \u202e08:1.0.0.01 z\u200bw \\u202e"}, HeartbeatTimeout: 30},
		{ID: "web-2", Metadata: map[string]string{"note": `~ \.php$`}, HeartbeatTimeout: 30},
	}, nil, "m", time.Now()))
	// The feed position is the registry's too.
	health.Watch = func() watcher.Status { return watcher.Status{Marker: "m\u202eevil"} }
	_, body := get(t, Handler(Config{Health: health, Status: status}), "GET", "/")
	for _, bad := range []string{"\u202e", "\u200b"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page holds %q as it is", bad)
		}
	}
	// Line by line: the other line's backslash is not doubled. Each
	// escape is marked, so that the text "\u202e" does not read as one.
	esc := func(e string) string { return `<span class="esc">` + e + `</span>` }
	for _, want := range []string{
		`web-1 ` + esc(`\u202e`) + `08:1.0.0.01 z` + esc(`\u200b`) + `w ` + esc(`\\`) + `u202e`,
		`bad ` + esc(`\u202e`) + `gnirts`, `+server ~ \.php$`, `m` + esc(`\u202e`) + `evil`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q:\n%s", want, body)
		}
	}
}

// Escapes next to each other are one element: a change of registry data
// made of control characters is a few elements, not one a character,
// laid out again at every refresh of the page.
func TestPageMarksARunOfEscapesOnce(t *testing.T) {
	t.Parallel()
	got := string(shown("a" + strings.Repeat("\x7f", 1000) + "b\x7f\u200bc\n\x7f"))
	want := `a<span class="esc">` + strings.Repeat(`\x7f`, 1000) + `</span>b<span class="esc">\x7f\u200b</span>c` + "\n" + `<span class="esc">\x7f</span>`
	if got != want {
		t.Errorf("shown:\n%.300s\nwant:\n%.300s", got, want)
	}
	// Text and escapes in turn: past maxMarkedRuns runs, the rest is one
	// element, the text unchanged.
	alternating := strings.Repeat("a\x7f", 30000)
	got = string(shown(alternating))
	if n := strings.Count(got, "<span"); n != maxMarkedRuns+1 {
		t.Errorf("%d elements for 30,000 runs of escapes; want %d", n, maxMarkedRuns+1)
	}
	if !strings.Contains(got, `<span class="esc rest"`) || regexp.MustCompile(`<[^>]*>`).ReplaceAllString(got, "") != strings.Repeat(`a\x7f`, 30000) {
		t.Errorf("the text past the marked runs is not all there, or not marked:\n%.300s", got[len(got)-300:])
	}
}
