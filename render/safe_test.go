package render

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/watcher"
)

// hostile are values registry data may carry to break out of the token a
// template puts it in: directive and section injection, comments, escapes,
// control bytes, look-alikes and length.
var hostile = []string{
	"9; } server { listen 127.0.0.1:18099; location / { alias /etc/; autoindex on; } } upstream x { server 127.0.0.1:9",
	"80\nfrontend evil\n    bind :18098",
	"80 # comment",
	"80;",
	"{", "}", ";",
	"10.0.0.1\x00",
	"10.0.0.1\r\n",
	"\x1b[31m",
	"80\\",
	"'80'", "\"80\"",
	"${SVCREG_API_KEY}",
	"８０",          // fullwidth digits
	"10.0.0.١",    // Arabic-Indic digit
	"еxample.com", // Cyrillic е
	"web‐1",       // Unicode hyphen
	"web\u200b1",  // zero-width space
	strings.Repeat("a", 255),
	strings.Repeat("9", 255),
	"+80", "-1", "0", "65536", "080", " 80", "0x50",
	"::1%eth0",
	"[::1]:80",
	"10.0.0.1:80",
	"host name",
	"-host",
	"a..b",
	"0x50.0x50", "10.1", "127.0.0.1.",
	"",
}

func TestSafeFunctionsRefuseHostileValues(t *testing.T) {
	t.Parallel()
	// Values of the list that are well-formed for one function.
	fine := map[string]map[string]bool{
		"ident":   {strings.Repeat("a", 255): false, "0": true, "65536": true, "080": true, "0x50": true, "10.1": true, "0x50.0x50": true},
		"address": {"[::1]:80": false},
	}
	for _, v := range hostile {
		if _, err := parseInt("port", v, 1, 65535); err == nil {
			t.Errorf("port %q accepted", v)
		}
		if _, err := parseInt("weight", v, 1, maxWeight); err == nil {
			t.Errorf("weight %q accepted", v)
		}
		if _, err := parseName("identifier", v); err == nil && !fine["ident"][v] {
			t.Errorf("ident %q accepted", v)
		}
		if a, err := parseAddress("ip", v, addrRules{hostnames: true, loopback: true}); err == nil && !fine["address"][v] {
			t.Errorf("address %q accepted as %q", v, a)
		}
	}
	// The longest service id is one, and no longer one.
	if _, err := parseIdent("id", strings.Repeat("a", 65)); err != nil {
		t.Errorf("a 65-character identifier (the longest service id) refused: %v", err)
	}
	if _, err := parseIdent("id", strings.Repeat("a", 66)); err == nil {
		t.Error("a 66-character identifier accepted")
	}
	// A service id the registry takes is an endpoint's name, though as
	// a name (ident) it is not.
	for _, id := range []string{"web..1", "web.1."} {
		if _, err := parseIdent("id", id); err != nil {
			t.Errorf("service id %q refused: %v", id, err)
		}
		if _, err := parseName("identifier", id); err == nil {
			t.Errorf("ident %q accepted", id)
		}
	}
}

func TestSafeFunctionsAccept(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, str, bracketed string }{
		{"10.0.0.1", "10.0.0.1", "10.0.0.1"},
		{"2001:db8::1", "2001:db8::1", "[2001:db8::1]"},
		{"[2001:DB8::1]", "2001:db8::1", "[2001:db8::1]"},
		{"::ffff:10.0.0.1", "::ffff:10.0.0.1", "[::ffff:10.0.0.1]"},
		{"Web-1.internal", "web-1.internal", "web-1.internal"},
		{"localhost", "localhost", "localhost"},
		{"127.0.0.1", "127.0.0.1", "127.0.0.1"},
		{"::1", "::1", "[::1]"},
	} {
		a, err := parseAddress("ip", tc.in, addrRules{hostnames: true, loopback: true})
		if err != nil || a.String() != tc.str || a.Bracketed() != tc.bracketed {
			t.Errorf("address %q = %q, %q, %v; want %q, %q", tc.in, a.String(), a.Bracketed(), err, tc.str, tc.bracketed)
		}
	}
	for in, want := range map[string]int{"1": 1, "80": 80, "65535": 65535} {
		if got, err := parseInt("port", in, 1, 65535); err != nil || got != want {
			t.Errorf("port %q = %d, %v", in, got, err)
		}
	}
	for in, want := range map[string]string{
		`/health`:       `"/health"`,
		`a "b" \c ;{}#`: `"a \"b\" \\c ;{}#"`,
		`Grüße`:         `"Grüße"`,
		// Joiners some scripts and emoji need, presentation selectors
		// after an emoji, ideographic variation selectors after an
		// ideograph.
		"می\u200cخواهم 👩\u200d💻":                                         "\"می\u200cخواهم 👩\u200d💻\"",
		"\u2764\ufe0f \U0001f3f3\ufe0f\u200d\U0001f308 \u845b\U000e0100": "\"\u2764\ufe0f \U0001f3f3\ufe0f\u200d\U0001f308 \u845b\U000e0100\"",
	} {
		if got, err := nginxString(in); err != nil || got != want {
			t.Errorf("nginxString %q = %s, %v; want %s", in, got, err, want)
		}
	}
	for in, want := range map[string]string{`/a b#c\d"`: `'/a b#c\d"'`} {
		if got, err := haproxyString(in); err != nil || got != want {
			t.Errorf("haproxyString %q = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"a\nb", "a\x00", "$host", strings.Repeat("x", maxQuoted+1), "\xff", "\u202e08:1.0.0.01", "a\u200bb", "\ufeff", "api\u3164", "\u2800",
		// Characters that show as nothing: an invisible operator, a tag
		// character, a variation selector, the combining grapheme joiner,
		// a Khmer inherent vowel, a soft hyphen, the Mongolian vowel
		// separator, a musical symbol's format character.
		"api\u2061.example.com", "api\U000E0041.example.com", "api\ufe0f.example.com", "api\u034f.example.com",
		"api\u17b4.example.com", "api\u00ad.example.com", "api\u180e.example.com", "api\U0001d173.example.com",
		// A variation selector after what shows nothing, after ASCII,
		// after a letter or a mark; a number sign.
		"\ufe0f", "a \ufe0fb", "\u200b\ufe0f", "\u2764\ufe0f\ufe0f", "api\u200d\ufe0f.example.com", "caf\u00e9\ufe0f",
		"api\u0301\ufe0f", "api\u070f\ufe0f", "\u0600\u0661", "\U0001f600\ufe00", "\u845b\ufe0f",
		// Spaces other than ASCII's, which show as a blank inside one
		// word: a no-break space, a figure space, an em space, a narrow
		// no-break space, the Ogham space mark, the ideographic space.
		"api\u00a0", "/a\u2007b", "a\u2003b", "a\u202fb", "a\u1680b", "a\u3000b"} {
		if got, err := nginxString(bad); err == nil {
			t.Errorf("nginxString %q accepted as %s", bad, got)
		}
	}
	for _, bad := range []string{"a\nb", "a\x00", "it's", "\u2028", "%[env(SECRET)]", "100%", "", "api\u00a0", "/a\u3000b"} {
		if got, err := haproxyString(bad); err == nil {
			t.Errorf("haproxyString %q accepted as %s", bad, got)
		}
	}
}

// nginxMapKey writes a key as "\\…" (and " and \ escaped), which nginx
// reads as \…, and its map as the string after the backslash; what a map
// with hostnames reads as a wildcard (or refuses) is refused.
func TestNginxMapKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"alpha.example": `"\\alpha.example"`,
		"default":       `"\\default"`,
		"~.":            `"\\~."`,
		`\x`:            `"\\\\x"`,
		`a"b`:           `"\\a\"b"`,
		"$host":         `"\\$host"`,
	} {
		if got, err := nginxMapKey(in); err != nil || got != want {
			t.Errorf("nginxMapKey %q = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "*.example", "www.example.*", "~*.", "a*b", ".example", "a..b", "a\nb", "a\x00", strings.Repeat("x", maxQuoted+1), "\xff"} {
		if got, err := nginxMapKey(bad); err == nil {
			t.Errorf("nginxMapKey %q accepted as %s", bad, got)
		}
	}
}

// startNginx runs nginx with http in its http block and a server on a
// loopback port holding server, stops it when the test ends, and returns
// the server's URL.
func startNginx(t *testing.T, http, server string) string {
	t.Helper()
	bin := testprog.Find(t, "nginx", "this test runs against the real nginx; `make deps` installs it (apt-get install nginx)")
	dir, port := t.TempDir(), freeport.Port(t)
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	text := fmt.Sprintf("pid %[1]s/nginx.pid;\nerror_log %[1]s/logs/error.log;\nevents { worker_connections 64; }\n"+
		"http {\n    access_log off;\n%[5]s%[2]s    server {\n        listen 127.0.0.1:%[3]d;\n%[4]s    }\n}\n", dir, http, port, server,
		testprog.NginxTempPaths(t, bin, dir))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-c", conf}
	// Before the start: an nginx that started and then reported an error
	// must not outlive the test either.
	t.Cleanup(func() { exec.Command(bin, append(args, "-s", "quit")...).Run() })
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("start nginx: %v: %s\n%s", err, out, text)
	}
	return "http://127.0.0.1:" + strconv.Itoa(port) + "/"
}

// A map keyed by nginxMapKey, with hostnames or without, matches each key's
// own string (in any case) and nothing else: no key is a parameter
// (default, include, hostnames, volatile), a regular expression or a
// wildcard.
func TestNginxMapKeyIsLiteral(t *testing.T) {
	t.Parallel()
	var keys []string
	var entries strings.Builder
	for _, k := range []string{"alpha.example", "default", "include", "hostnames", "volatile", "~.", "~*.", "~^", "~*", `\x`, `\`, `x\`, `\"`, `\n`,
		`a"b`, `"`, "$host", "${x}", "#c", "a;b {c}", "Grüße", "*.w", ".w", "w.*", ""} {
		q, err := nginxMapKey(k)
		if err != nil {
			continue
		}
		fmt.Fprintf(&entries, "        %s k%d;\n", q, len(keys))
		keys = append(keys, k)
	}
	url := startNginx(t, fmt.Sprintf("    map $http_x_key $exact {\n        default none;\n%[1]s    }\n"+
		"    map $http_x_key $hostnames {\n        hostnames;\n        default none;\n%[1]s    }\n", entries.String()),
		"        return 200 \"$exact $hostnames\";\n")
	mapped := func(key string) string {
		req, _ := http.NewRequest("GET", url, nil)
		if key != "" {
			req.Header.Set("X-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	for i, k := range keys {
		want := fmt.Sprintf("k%d k%d", i, i)
		if strings.HasSuffix(k, ".") {
			// A map with hostnames looks a value up without its
			// trailing dot.
			want = fmt.Sprintf("k%d none", i)
		}
		if got := mapped(k); got != want {
			t.Errorf("key %q: %q; want %q", k, got, want)
		}
	}
	if got := mapped("ALPHA.Example"); got != "k0 k0" {
		t.Errorf("ALPHA.Example: %q; want the key alpha.example's k0 k0", got)
	}
	for _, other := range []string{"", "other.example", "beta.example", "x", "~", "w", "a.w", "alpha"} {
		if got := mapped(other); got != "none none" {
			t.Errorf("%q, which is no key: %q; want the default, none none", other, got)
		}
	}
}

// What ident takes is a server name nginx takes, also with a suffix, in
// server blocks that share a listen (with the server_names_hash_bucket_size
// the README gives for the longest), and each name gets its own requests.
func TestIdentIsAServerName(t *testing.T) {
	t.Parallel()
	var names []string
	var servers strings.Builder
	for _, n := range []string{"web", "x..y", "x.", "a.b", "a-b_c.d", "0", strings.Repeat("n", maxIdentifier), "-x", ".x", "a b"} {
		if _, err := parseName("identifier", n); err != nil {
			continue
		}
		fmt.Fprintf(&servers, "    server { listen 127.0.0.1:%%[1]d; server_name %s.example.com; return 200 %q; }\n", n, n)
		names = append(names, n)
	}
	port := freeport.Port(t)
	// startNginx's own server answers the requests of other names.
	startNginx(t, "    server_names_hash_bucket_size 128;\n"+fmt.Sprintf(servers.String(), port), "        return 404;\n")
	for _, n := range names {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(port)+"/", nil)
		req.Host = n + ".example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != n {
			t.Errorf("server name %s.example.com: answered %q", n, body)
		}
	}
	if len(names) != 5 {
		t.Errorf("ident took %q; want web, a.b, a-b_c.d, 0 and the 65-character name", names)
	}
}

// httpPath takes a request path that needs no quotes in an nginx or a
// HAProxy config and refuses the rest: a space (it ends the request
// line's target, so every health check of a backend would fail), what the
// configs read ('$', ';', '#', '%', quotes), another host ("//x"), dot
// segments, control characters.
func TestHTTPPath(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"/", "/health", "/a/b?x=1&y=2", "/~u/p-q_r.s,t:u@v+w", "/a.b/..c/d..", "/a?x=/../"} {
		if got, err := httpPath(ok); err != nil || got != ok {
			t.Errorf("httpPath %q = %q, %v; want it as it is", ok, got, err)
		}
	}
	for _, bad := range []string{"", "health", "/a b", "//evil.example/x", "/a/../b", "/./a", "/..", "/a%20b", "/$host", "/a;b", "/a#b",
		"/it's", `/a"b`, `/a\b`, "/a\nb", "/a\x00", "/Grüße", "/a{b}", "/" + strings.Repeat("x", maxQuoted)} {
		if got, err := httpPath(bad); err == nil {
			t.Errorf("httpPath %q accepted as %q", bad, got)
		}
	}
}

// A path httpPath accepts is, written unquoted in option httpchk, the
// request target of HAProxy's health checks, whole.
func TestHTTPPathRoundTrips(t *testing.T) {
	t.Parallel()
	paths := []string{"/health", "/a/b?x=1&y=2,z", "/~u/p-q_r.s:u@v+w"}
	seen := make(chan string, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.RequestURI:
		default:
		}
	}))
	defer srv.Close()
	var cfg strings.Builder
	for i, p := range paths {
		q, err := httpPath(p)
		if err != nil {
			t.Fatal(err)
		}
		name := "api"
		if i > 0 {
			name = fmt.Sprint("b", i)
		}
		fmt.Fprintf(&cfg, "backend %s\n    option httpchk GET %s\n    server s %s check inter 100ms\n", name, q, srv.Listener.Addr())
	}
	haproxytest.Start(t, cfg.String(), false)
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	deadline := time.After(30 * time.Second) // only a bound for a broken test
	for len(want) > 0 {
		select {
		case p := <-seen:
			if !slices.Contains(paths, p) {
				t.Fatalf("HAProxy checked %q, which is none of %q", p, paths)
			}
			delete(want, p)
		case <-deadline:
			t.Fatalf("HAProxy never checked %v", want)
		}
	}
}

// What haproxyString accepts, HAProxy reads as that value and nothing
// else: each value alone (a return's body), and all of them as one ACL's
// list of values, where an empty word would drop the values after it.
func TestHAProxyStringRoundTrips(t *testing.T) {
	t.Parallel()
	var acl, accepted []string
	var rules strings.Builder
	// HAProxy takes the quotes off before its keywords read a word: a
	// quoted "-m found" would make the list match any value, a quoted "}"
	// end an anonymous ACL, and "||", "if" and the like read as syntax.
	for _, v := range []string{"alpha.example", "", "beta.example", "/a b", "#c", `back\slash\`, `"d"`, "$HOME", "${HOME}", "a;b {c}", "Grüße", "it's", "100%",
		"-m", "found", "-f", "/etc/hosts", "--", "-i", "}", "{", "||", "or", "OR", "!", "if", "IF", "unless", "TRUE", "a-b", "x-"} {
		q, err := haproxyString(v)
		if err != nil {
			continue
		}
		acl = append(acl, q)
		// Also alone in an anonymous ACL, where its flags end.
		fmt.Fprintf(&rules, "    http-request return status 200 content-type text/plain string %s if known { req.hdr(x-i) -m str %d } { req.hdr(x-v),b64dec -m str %s }\n", q, len(accepted), q)
		accepted = append(accepted, v)
	}
	h := haproxytest.Start(t, "backend api\n    acl known req.hdr(x-v),b64dec -m str "+strings.Join(acl, " ")+"\n"+rules.String(), false)
	for i, v := range accepted {
		req, _ := http.NewRequest("GET", h.URL(), nil)
		req.Header.Set("X-V", base64.StdEncoding.EncodeToString([]byte(v)))
		req.Header.Set("X-I", strconv.Itoa(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != v {
			t.Errorf("%q: HAProxy answers %d %q; want 200 and the value (is it in the ACL's list?)", v, resp.StatusCode, body)
		}
	}
	for i := range accepted {
		req, _ := http.NewRequest("GET", h.URL(), nil)
		req.Header.Set("X-V", base64.StdEncoding.EncodeToString([]byte("innocent.example")))
		req.Header.Set("X-I", strconv.Itoa(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("a value in no list matches the ACL of %q", accepted)
			break
		}
	}
}

const endpointsTemplate = `{{range endpoints (servicesWithTag "www")}}server {{.HostPort}}{{with .Weight}} weight={{.}}{{end}}; # {{.Name}}
{{end}}`

// Services whose data is refused are left out of the render, each reported
// by a log line naming the service and the field, a metric, and /healthz;
// the others render.
func TestEndpointsLeaveOutAndReportRefusedServices(t *testing.T) {
	t.Parallel()
	g := newGroup(t, endpointsTemplate)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	g.r = NewRenderer(slog.New(slog.NewTextHandler(&logs, nil)), NewMetrics(reg), nil)
	set := g.set(t, TemplateConfig{AllowHostnames: true})
	snap := snapshot(
		svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80", "weight": "3"}),
		svc("web-2", []string{"www"}, map[string]string{"ip": "2001:db8::2", "port": "8080"}),
		svc("web-3", []string{"www"}, map[string]string{"host": "web-3.internal", "port": "80"}),
		svc("evil-port", []string{"www"}, map[string]string{"ip": "10.0.0.9", "port": hostile[0]}),
		svc("evil-ip", []string{"www"}, map[string]string{"ip": "10.0.0.9\n}", "port": "80"}),
		svc("evil weight", []string{"www"}, map[string]string{"ip": "10.0.0.9", "port": "80"}),
		svc("evil-weight", []string{"www"}, map[string]string{"ip": "10.0.0.9", "port": "80", "weight": "1 backup"}),
		svc("no-port", []string{"www"}, map[string]string{"ip": "10.0.0.9"}),
	)
	res := g.r.Pass(context.Background(), set, snap)
	if len(res.Failures) != 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	want := "server 10.0.0.1:80 weight=3; # web-1\nserver [2001:db8::2]:8080; # web-2\nserver web-3.internal:80; # web-3\n"
	if got := readFile(t, g.dest); got != want {
		t.Fatalf("rendered:\n%s\nwant:\n%s", got, want)
	}
	for _, want := range []string{
		`service=evil-port field=port`, `service=evil-ip field=ip`,
		`service="evil weight" field=id`, `service=evil-weight field=weight`, `service=no-port field=port`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	byField := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "svcreg_template_refused_services_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "field" {
					byField[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if want := map[string]float64{"port": 2, "ip": 1, "id": 1, "weight": 1}; fmt.Sprint(byField) != fmt.Sprint(want) {
		t.Errorf("refused services by field = %v; want %v", byField, want)
	}
	rep := g.r.Health.Report(0)
	if got := len(rep.Groups[g.dest].Refused); got != 5 {
		t.Fatalf("healthz lists %d refused services; want 5: %+v", got, rep.Groups[g.dest].Refused)
	}

	// Fixed data: the service renders and /healthz no longer lists it.
	snap2 := snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80"}))
	g.r.Pass(context.Background(), set, snap2)
	if got := g.r.Health.Report(0).Groups[g.dest].Refused; len(got) != 0 {
		t.Fatalf("healthz still lists refusals: %+v", got)
	}
}

func TestOnRefusedFailKeepsTheOldFile(t *testing.T) {
	t.Parallel()
	g := newGroup(t, endpointsTemplate)
	set := g.set(t, TemplateConfig{OnRefused: RefusedFail})
	good := svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80"})
	if res := g.r.Pass(context.Background(), set, snapshot(good)); len(res.Failures) != 0 {
		t.Fatal(res.Failures)
	}
	before := readFile(t, g.dest)
	bad := svc("web-2", []string{"www"}, map[string]string{"ip": "10.0.0.2", "port": "80;"})
	res := g.r.Pass(context.Background(), set, snapshot(good, bad))
	if w := res.Worst(); w == nil || w.Step != StepRender || !strings.Contains(w.Error(), `service "web-2": port "80;" refused`) {
		t.Fatalf("worst = %v; want a render failure naming the service and field", w)
	}
	if readFile(t, g.dest) != before {
		t.Fatal("the file changed after a failed render")
	}
}

// The value functions refuse with an error that fails the render (they
// know no service to leave out); endpoint leaves one service out.
func TestValueFunctionsAndEndpoint(t *testing.T) {
	t.Parallel()
	snap := snapshot(
		svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80", "path": "/a b"}),
		svc("web-2", []string{"www"}, map[string]string{"ip": "10.0.0.2", "port": "x"}),
		svc("web-3", nil, map[string]string{"ip": "10.0.0.3", "port": "80", "backend": "api"}),
		svc("web-4", nil, map[string]string{"ip": "10.0.0.4", "port": "80", "backend": "api\nfrontend x"}),
		// Its backend only differs in case: nginx would take it for a
		// second upstream of the same name.
		svc("web-5", nil, map[string]string{"ip": "10.0.0.5", "port": "80", "backend": "API"}),
	)
	renderCases(t, snap, []renderCase{
		{"port", `{{port "8080"}}`, "8080", ""},
		{"port refused", `{{port "80;"}}`, "", "port refused (the value is not shown)"},
		{"addr", `{{(addr "2001:db8::1").Bracketed}} {{addr "10.0.0.1"}}`, "[2001:db8::1] 10.0.0.1", ""},
		{"addr refused", `{{addr "10.0.0.1 backup"}}`, "", "address refused (the value is not shown): not an IP address"},
		{"weight", `{{weight "256"}}`, "256", ""},
		{"weight refused", `{{weight "257"}}`, "", "not a number in 1..256"},
		{"ident", `{{ident "api_v2.x-y"}}`, "api_v2.x-y", ""},
		{"ident refused", `{{ident "api v2"}}`, "", "identifier refused (the value is not shown)"},
		{"nginxString", `{{nginxString (service "web-1").Metadata.path}}`, `"/a b"`, ""},
		{"haproxyString", `{{haproxyString (service "web-1").Metadata.path}}`, `'/a b'`, ""},
		{"nginxMapKey", `{{nginxMapKey "default"}}`, `"\\default"`, ""},
		{"nginxMapKey refused", `{{nginxMapKey "*.example"}}`, "", "map key refused (the value is not shown)"},
		{"endpoint", `{{range services}}{{with endpoint .}}{{.HostPort}} {{end}}{{end}}`, "10.0.0.1:80 10.0.0.3:80 10.0.0.4:80 10.0.0.5:80 ", ""},
		{"endpoint of a pointer", `{{(endpoint (service "web-1")).Port}}`, "80", ""},
		{"number", `{{configOr "/lb/port" "1" | number 1 65535}}`, "8080", ""},
		{"number refused", `{{number 1 10 "11"}}`, "", "number refused (the value is not shown): not a number in 1..10"},
		{"endpointsBy", `{{range $b, $eps := endpointsBy "backend" services}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}`, "api:web-3 ", ""},
		{"endpoint raw service", `{{range endpoints services}}{{.Service.Metadata.path}}{{end}}`, "/a b", ""},
	})
}

// renderCase is a template, and the output or the error (a part of its
// text) its render gives.
type renderCase struct{ name, tmpl, want, err string }

// renderCases renders each case's template for snap, in a subtest.
func renderCases(t *testing.T, snap *watcher.Snapshot, cases []renderCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			set := newSet(t, TemplateConfig{Contents: tc.tmpl, Destination: filepath.Join(dir, "out")})
			out, err := set.Groups[0].Templates[0].Render(snap)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(out) != tc.want {
				t.Fatalf("got %q, %v; want %q", out, err, tc.want)
			}
		})
	}
}

// A value function called straight on a configuration value fails the
// render without quoting the value: the error goes to the log, /healthz
// and the status page, and the value may be a secret (the password in an
// Authorization header). Neither does a reason quote a part of it.
func TestValueFunctionsWithholdTheValue(t *testing.T) {
	t.Parallel()
	const secret = "HUNTER2"
	snap := watcher.NewSnapshot(nil, []registry.ConfigValue{
		{ID: "/auth", Value: "Bearer s3cr3t-$tok-" + secret},
		{ID: "/quote", Value: "it's-" + secret},
		{ID: "/path", Value: "/x?key=" + secret + "#"},
		{ID: "/word", Value: secret + " x"},
		{ID: "/key", Value: "*." + secret},
		{ID: "/n", Value: secret},
	}, "marker", time.Now())
	for _, tmpl := range []string{
		`{{config "/auth" | nginxString}}`,
		`{{config "/quote" | haproxyString}}`,
		`{{config "/path" | httpPath}}`,
		`{{config "/word" | ident}}`,
		`{{config "/key" | nginxMapKey}}`,
		`{{config "/word" | addr}}`,
		`{{config "/n" | port}}`,
		`{{config "/n" | weight}}`,
		`{{config "/n" | number 1 9}}`,
		`{{configAs "/path" "/" "httpPath"}}`, // reported, not failed
	} {
		set := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(t.TempDir(), "out")})
		out, refused, err := set.Groups[0].Templates[0].execute(context.Background(), snap)
		if strings.HasPrefix(tmpl, "{{configAs") {
			if err != nil || len(refused) != 1 || strings.Contains(fmt.Sprint(refused), secret) || strings.Contains(refused[0].Reason, "'#'") {
				t.Errorf("%s: %q, %+v, %v; want the default, and the refusal without the value or its character", tmpl, out, refused, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "refused (the value is not shown)") || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: %v; want refused, without the value", tmpl, err)
		}
	}
}

// configAs checks a configuration value with a value function by name,
// and gives the default, checked too, when the value is missing or
// refused; the template's mistakes (a function not known, its arguments, a
// refused default) fail the render.
func TestConfigAs(t *testing.T) {
	t.Parallel()
	snap := watcher.NewSnapshot(nil, []registry.ConfigValue{
		{ID: "/lb/port", Value: "8080"},
		{ID: "/lb/name", Value: "front"},
		{ID: "/lb/addr", Value: "2001:db8::1"},
		{ID: "/lb/self", Value: "::1"},
		{ID: "/nginx/keepalive", Value: "lots"},
		{ID: "/haproxy/api/health", Value: "it's"},
		{ID: "/haproxy/web/health", Value: "/ping?full=1"},
	}, "marker", time.Now())
	renderCases(t, snap, []renderCase{
		{"port", `{{configAs "/lb/port" "80" "port"}}`, "8080", ""},
		{"missing", `{{configAs "/none" "80" "port"}}`, "80", ""},
		{"number", `{{configAs "/lb/port" "1" "number" 1 65535}}`, "8080", ""},
		{"number refused", `{{configAs "/nginx/keepalive" "16" "number" 1 10000}}`, "16", ""},
		{"haproxyString refused", `{{configAs "/haproxy/api/health" "/" "haproxyString"}}`, "'/'", ""},
		{"httpPath", `{{configAs "/haproxy/web/health" "/" "httpPath"}}`, "/ping?full=1", ""},
		{"httpPath refused", `{{configAs "/haproxy/api/health" "/" "httpPath"}}`, "/", ""},
		{"httpPath default refused", `{{configAs "/haproxy/web/health" "/a b" "httpPath"}}`, "", "the default of \"/haproxy/web/health\": path \"/a b\" refused"},
		{"ident", `{{configAs "/lb/name" "x" "ident"}}`, "front", ""},
		{"addr", `{{(configAs "/lb/addr" "10.0.0.1" "addr").Bracketed}}`, "[2001:db8::1]", ""},
		// The default is the template's: a loopback one is taken, a
		// loopback value from the registry is not.
		{"addr, a loopback default", `{{configAs "/none" "127.0.0.1" "addr"}}`, "127.0.0.1", ""},
		{"addr, a loopback value", `{{configAs "/lb/self" "10.0.0.1" "addr"}}`, "10.0.0.1", ""},
		{"weight refused", `{{configAs "/lb/port" "1" "weight"}}`, "1", ""},
		{"nginxString", `{{configAs "/lb/name" "x" "nginxString"}}`, `"front"`, ""},
		{"nginxMapKey", `{{configAs "/lb/name" "x" "nginxMapKey"}}`, `"\\front"`, ""},
		{"not a value function", `{{configAs "/lb/port" "80" "printf"}}`, "", `"printf" is not a value function`},
		{"arguments", `{{configAs "/lb/port" "80" "number" 1}}`, "", "number takes 2 integer arguments after its name, not 1"},
		{"argument type", `{{configAs "/lb/port" "80" "number" 1 "9"}}`, "", "number's argument 2, 9 (string), is not an integer"},
		{"sprig's int64", `{{configAs "/lb/port" "80" "number" 1 (add 65534 1)}}`, "8080", ""},
		{"default refused", `{{configAs "/nginx/keepalive" "many" "number" 1 10000}}`, "", `the default of "/nginx/keepalive": number "many" refused`},
		// Whatever the registry holds: a value that passes does not hide
		// the template's mistake until the day it is refused.
		{"default refused, the value good", `{{configAs "/lb/port" "many" "number" 1 65535}}`, "", `the default of "/lb/port": number "many" refused`},
	})

	// function_denylist holds for configAs too.
	dir := t.TempDir()
	c := Config{FunctionDenylist: []string{"haproxyString"},
		Templates: []TemplateConfig{{Contents: `{{configAs "/lb/name" "x" "haproxyString"}}`, Destination: filepath.Join(dir, "out")}}}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Groups[0].Templates[0].Render(snap); err == nil || !strings.Contains(err.Error(), "configAs: haproxyString is in function_denylist") {
		t.Fatalf("err = %v; want the denied function refused", err)
	}
}

// Every value function has a type bindValue calls directly: one of
// another type panics here rather than in a template's configAs.
func TestBindValueKnowsEveryValueFunction(t *testing.T) {
	t.Parallel()
	for _, value := range (&execState{}).valueFuncs() {
		bindValue(value, make([]int, reflect.TypeOf(value).NumIn()-1))
	}
}

// Calls whose integer arguments are of different kinds (constants are
// int; sprig's arithmetic gives int64) share one checker.
func TestCheckerKeysIntegersOfAnyKind(t *testing.T) {
	t.Parallel()
	st := &execState{}
	for _, args := range [][]any{{int64(1), int64(10)}, {1, 10}, {uint8(1), 10}} {
		if _, _, err := st.checker("metaAs", "number", args, "5", func() string { return "max_conns" }); err != nil {
			t.Fatalf("%T, %T: %v", args[0], args[1], err)
		}
		if len(st.checkers) != 1 {
			t.Errorf("%T, %T: %d checkers kept, want the one: %v", args[0], args[1], len(st.checkers), st.checkers)
		}
	}
}

// A configuration value configAs refuses is reported as a refused service
// is (log, metric, /healthz), and the render goes on with the default: one
// bad value does not hold back every later change of the group. With
// on_refused = "fail" it fails the render, and the old file stays.
func TestConfigAsReportsRefusedValues(t *testing.T) {
	t.Parallel()
	// The services first: their refusals come before the value's.
	tmpl := `{{range endpoints services}}server {{.HostPort}}; {{end}}keepalive {{configAs "/nginx/keepalive" "16" "number" 1 10000}};` + "\n"
	good := svc("web-1", nil, map[string]string{"ip": "10.0.0.1", "port": "80"})
	snap := func(keepalive string, services ...registry.Service) *watcher.Snapshot {
		return watcher.NewSnapshot(services, []registry.ConfigValue{{ID: "/nginx/keepalive", Value: keepalive}}, "marker", time.Now())
	}
	g := newGroup(t, tmpl)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	g.r = NewRenderer(slog.New(slog.NewTextHandler(&logs, nil)), NewMetrics(reg), nil)
	set := g.set(t, TemplateConfig{})
	if res := g.r.Pass(context.Background(), set, snap("lots", good)); len(res.Failures) != 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	if got, want := readFile(t, g.dest), "server 10.0.0.1:80; keepalive 16;\n"; got != want {
		t.Fatalf("rendered %q, want %q", got, want)
	}
	if want := `msg="configuration value refused: the template's default is used"`; !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), `configuration=/nginx/keepalive reason="refused by number: not a number in 1..10000"`) {
		t.Errorf("log lacks the refusal:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "lots") {
		t.Errorf("the log quotes the refused value, which may be a secret:\n%s", logs.String())
	}
	refused := g.r.Health.Report(0).Groups[g.dest].Refused
	if len(refused) != 1 || refused[0].Configuration != "/nginx/keepalive" || refused[0].Service != "" || refused[0].Field != "configuration" {
		t.Fatalf("healthz lists %+v; want the value /nginx/keepalive", refused)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byField := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "svcreg_template_refused_services_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "field" {
						byField[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if fmt.Sprint(byField) != "map[configuration:1]" {
		t.Errorf("refusals counted %v, want one of field configuration", byField)
	}
	// A later change still goes out; a fixed value clears the report.
	web2 := svc("web-2", nil, map[string]string{"ip": "10.0.0.2", "port": "80"})
	g.r.Pass(context.Background(), set, snap("lots", good, web2))
	if got, want := readFile(t, g.dest), "server 10.0.0.1:80; server 10.0.0.2:80; keepalive 16;\n"; got != want {
		t.Fatalf("rendered %q, want %q", got, want)
	}
	g.r.Pass(context.Background(), set, snap("32", good, web2))
	if got := g.r.Health.Report(0).Groups[g.dest].Refused; len(got) != 0 {
		t.Fatalf("healthz still lists %+v", got)
	}

	// Listed and logged before a hundred refused services, which would
	// push it out of both.
	logs.Reset()
	many := []registry.Service{good}
	for i := range 150 {
		many = append(many, svc(fmt.Sprintf("evil-%03d", i), nil, map[string]string{"ip": "10.0.0.9", "port": "80;"}))
	}
	g.r.Pass(context.Background(), set, snap("lots", many...))
	if got := g.r.Health.Report(0).Groups[g.dest].Refused; len(got) == 0 || got[0].Configuration != "/nginx/keepalive" {
		t.Errorf("with 150 refused services, healthz lists first %+v; want the value", got[:min(len(got), 1)])
	}
	if !strings.Contains(logs.String(), "configuration=/nginx/keepalive") {
		t.Errorf("with 150 refused services, the value's refusal is not logged:\n%.2000s", logs.String())
	}

	fail := newGroup(t, tmpl)
	fset := fail.set(t, TemplateConfig{OnRefused: RefusedFail})
	if res := fail.r.Pass(context.Background(), fset, snap("32", good)); len(res.Failures) != 0 {
		t.Fatal(res.Failures)
	}
	before := readFile(t, fail.dest)
	res := fail.r.Pass(context.Background(), fset, snap("lots", good, web2))
	if w := res.Worst(); w == nil || w.Step != StepRender || !strings.Contains(w.Error(), `configuration value "/nginx/keepalive" refused by number: not a number in 1..10000`) || strings.Contains(w.Error(), "lots") {
		t.Fatalf("worst = %v; want a render failure naming the value", w)
	}
	if readFile(t, fail.dest) != before {
		t.Fatal("the file changed after a failed render")
	}
}

// metaAs checks a service's metadata value as configAs checks a
// configuration value: the default when the key is missing or the value
// refused, the template's own mistakes an error.
func TestMetaAs(t *testing.T) {
	t.Parallel()
	snap := snapshot(svc("web-1", nil, map[string]string{"ip": "10.0.0.1", "port": "80", "max_conns": "5", "bad": "lots", "path": "/a b"}))
	renderCases(t, snap, []renderCase{
		{"number", `{{metaAs (service "web-1") "max_conns" "100" "number" 1 10000}}`, "5", ""},
		{"missing", `{{metaAs (service "web-1") "none" "100" "number" 1 10000}}`, "100", ""},
		{"refused", `{{metaAs (service "web-1") "bad" "100" "number" 1 10000}}`, "100", ""},
		{"an endpoint's", `{{range endpoints services}}{{metaAs . "max_conns" "100" "number" 1 10000}}{{end}}`, "5", ""},
		{"no service", `{{metaAs (service "nope") "max_conns" "100" "number" 1 10000}}`, "100", ""},
		{"httpPath refused", `{{metaAs (service "web-1") "path" "/" "httpPath"}}`, "/", ""},
		{"not a service", `{{metaAs "web-1" "max_conns" "100" "number" 1 10000}}`, "", "metaAs: string is not a service or an endpoint"},
		{"not a value function", `{{metaAs (service "web-1") "max_conns" "1" "printf"}}`, "", `metaAs: "printf" is not a value function`},
		{"arguments", `{{metaAs (service "web-1") "max_conns" "1" "number" 1}}`, "", "metaAs: number takes 2 integer arguments after its name, not 1"},
		{"default refused, the value good", `{{metaAs (service "web-1") "max_conns" "many" "number" 1 10000}}`, "", `metaAs: the default of metadata "max_conns": number "many" refused`},
		// A render keeps the checkers it made: calls with other
		// arguments, defaults or functions each get their own.
		{"calls with other arguments", `{{range $r := list 3 9 4}}{{metaAs (service "web-1") "max_conns" "1" "number" 1 $r}},{{end}}`, "1,5,1,", ""},
		{"calls with other defaults", `{{range $d := list "7" "8"}}{{metaAs (service "web-1") "none" $d "number" 1 10}},{{end}}`, "7,8,", ""},
		{"calls with other functions", `{{metaAs (service "web-1") "port" "1" "number" 1 10}},{{metaAs (service "web-1") "port" "1" "port"}},{{metaAs (service "web-1") "path" "a" "ident"}},{{metaAs (service "web-1") "path" "a" "nginxString"}}`, "1,80,a,\"/a b\"", ""},
		{"integers of another kind", `{{range $r := list 3 9}}{{metaAs (service "web-1") "max_conns" "1" "number" (int64 1) (add $r 0)}},{{end}}`, "1,5,", ""},
		{"a good call, then a call with a refused default", `{{metaAs (service "web-1") "max_conns" "1" "number" 1 10}}{{metaAs (service "web-1") "max_conns" "11" "number" 1 10}}`, "", `metaAs: the default of metadata "max_conns": number "11" refused`},
		{"configAs and metaAs alike", `{{configAs "/none" "4" "number" 1 10}},{{metaAs (service "web-1") "max_conns" "4" "number" 1 10}},{{configAs "/none" "4" "number" 1 3}}`, "", `configAs: the default of "/none": number "4" refused`},
	})
}

// One service's refused metadata value, read with metaAs, is reported
// with the service's name and the render goes on with the default: the
// other services' changes still go out. Given to the value function
// straight, it fails the render and holds every change back. With
// on_refused = "fail", metaAs fails the render too.
func TestMetaAsReportsRefusedValues(t *testing.T) {
	t.Parallel()
	tmpl := `{{range endpoints services}}server {{.HostPort}} max_conns={{metaAs . "max_conns" "100" "number" 1 10000}}; {{end}}` + "\n"
	ep := func(id, ip, maxConns string) registry.Service {
		return svc(id, nil, map[string]string{"ip": ip, "port": "80", "max_conns": maxConns})
	}
	g := newGroup(t, tmpl)
	var logs bytes.Buffer
	g.r = NewRenderer(slog.New(slog.NewTextHandler(&logs, nil)), NewMetrics(prometheus.NewRegistry()), nil)
	set := g.set(t, TemplateConfig{})
	if res := g.r.Pass(context.Background(), set, snapshot(ep("good-1", "10.0.0.1", "5"), ep("evil", "10.0.0.9", "lots"))); len(res.Failures) != 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	if got, want := readFile(t, g.dest), "server 10.0.0.9:80 max_conns=100; server 10.0.0.1:80 max_conns=5; \n"; got != want {
		t.Fatalf("rendered %q, want %q", got, want)
	}
	refused := g.r.Health.Report(0).Groups[g.dest].Refused
	if len(refused) != 1 || refused[0].Service != "evil" || refused[0].Field != "metadata" || !refused[0].DefaultUsed ||
		refused[0].Reason != `"max_conns" "lots" refused by number: not a number in 1..10000; the template's default "100" is used` {
		t.Fatalf("healthz lists %+v; want evil's max_conns, its default used", refused)
	}
	if !strings.Contains(logs.String(), `msg="metadata value refused: the template's default is used for the service"`) || !strings.Contains(logs.String(), "service=evil") || strings.Contains(logs.String(), "left out") {
		t.Errorf("log lacks the refusal, or says the service was left out:\n%s", logs.String())
	}
	// A later change of another service goes out.
	g.r.Pass(context.Background(), set, snapshot(ep("good-1", "10.0.0.1", "5"), ep("good-2", "10.0.0.2", "6"), ep("evil", "10.0.0.9", "lots")))
	if got, want := readFile(t, g.dest), "server 10.0.0.9:80 max_conns=100; server 10.0.0.1:80 max_conns=5; server 10.0.0.2:80 max_conns=6; \n"; got != want {
		t.Fatalf("rendered %q, want %q", got, want)
	}

	fail := newGroup(t, tmpl)
	fset := fail.set(t, TemplateConfig{OnRefused: RefusedFail})
	fail.r.Pass(context.Background(), fset, snapshot(ep("good-1", "10.0.0.1", "5")))
	before := readFile(t, fail.dest)
	res := fail.r.Pass(context.Background(), fset, snapshot(ep("good-1", "10.0.0.1", "5"), ep("evil", "10.0.0.9", "lots")))
	if w := res.Worst(); w == nil || w.Step != StepRender || !strings.Contains(w.Error(), `service "evil": metadata "max_conns" "lots" refused by number`) {
		t.Fatalf("worst = %v; want a render failure naming the service", w)
	}
	if readFile(t, fail.dest) != before {
		t.Fatal("the file changed after a failed render")
	}
}

// min_instances counts the endpoints left after refusals: hostile services
// alone do not make an upstream look populated.
func TestMinInstancesCountsEndpoints(t *testing.T) {
	t.Parallel()
	g := newGroup(t, endpointsTemplate)
	set := g.set(t, TemplateConfig{MinInstances: 1})
	// A file to keep: without one, the guard lets the render through.
	writeFile(t, g.dir, filepath.Base(g.dest), "server 10.0.0.9:80;\n")
	snap := snapshot(svc("evil", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80;"}))
	res := g.r.Pass(context.Background(), set, snap)
	var guard *GuardError
	if w := res.Worst(); w == nil || !errors.As(w.Err, &guard) || !strings.Contains(guard.Call, "endpoints") {
		t.Fatalf("worst = %v; want min_instances to refuse the endpoints list", w)
	}
}

// The lists groupByMeta makes count as one for min_instances, their total
// (after refusals, for endpoints): one service with a metadata value of
// its own, a backend of one service or of none left after refusals, does
// not hold back the render of every backend. sortByMeta and whereMeta
// keep a group's list one of the grouping.
func TestMinInstancesCountsAGroupingAsOne(t *testing.T) {
	t.Parallel()
	ep := func(id, ip, backend string) registry.Service {
		return svc(id, []string{"http"}, map[string]string{"ip": ip, "port": "80", "backend": backend, "zone": "a"})
	}
	for name, list := range map[string]string{
		"endpoints":  `$svcs`,
		"sorted":     `(sortByMeta "weight" $svcs)`,
		"where":      `(whereMeta "zone" "a" $svcs)`,
		"sorted too": `(sortByMeta "weight" (whereMeta "zone" "a" $svcs))`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tmpl := `{{range $name, $svcs := groupByMeta "backend" (servicesWithTag "http")}}upstream {{ident $name}}:{{range endpoints ` + list + `}} {{.HostPort}}{{end}};{{end}}`
			tp := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(t.TempDir(), "out"), MinInstances: 2}).Groups[0].Templates[0]
			for _, tc := range []struct {
				name  string
				snap  *watcher.Snapshot
				guard string // the list refused, or none
			}{
				{"a backend of one", snapshot(ep("api-1", "10.0.0.1", "api"), ep("api-2", "10.0.0.2", "api"), ep("new", "10.0.0.9", "new")), ""},
				{"a backend of none left", snapshot(ep("api-1", "10.0.0.1", "api"), ep("api-2", "10.0.0.2", "api"), ep("evil", "0.0.0.0", "evil")), ""},
				{"too few services", snapshot(ep("api-1", "10.0.0.1", "api")), `servicesWithTag "http"`},
				{"too few left", snapshot(ep("api-1", "10.0.0.1", "api"), ep("api-2", "0.0.0.0", "api"), ep("evil", "0.0.0.0", "evil")), `of the lists of groupByMeta "backend"`},
			} {
				_, _, err := tp.execute(context.Background(), tc.snap)
				var guard *GuardError
				switch {
				case tc.guard == "" && err != nil:
					t.Errorf("%s: %v; want the render", tc.name, err)
				case tc.guard != "" && (!errors.As(err, &guard) || !strings.Contains(guard.Call, tc.guard)):
					t.Errorf("%s: %v; want min_instances to refuse %s", tc.name, err, tc.guard)
				}
			}
		})
	}
}

// A group's list emptied by whereMeta is still the group's, and so are
// groups of a group and endpointsBy of one (a service of a backend of its
// own, in another zone, holds nothing back), and a service
// counts once in a grouping's total, its lists read twice or overlapping
// (else one good service of two would pass min_instances = 2).
func TestMinInstancesGroupingEdges(t *testing.T) {
	t.Parallel()
	ep := func(id, ip, backend, zone string) registry.Service {
		md := map[string]string{"ip": ip, "port": "80", "zone": zone}
		if backend != "" {
			md["backend"] = backend
		}
		return svc(id, []string{"http"}, md)
	}
	render := func(tmpl string, snap *watcher.Snapshot) error {
		tp := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(t.TempDir(), "out"), MinInstances: 2}).Groups[0].Templates[0]
		_, _, err := tp.execute(context.Background(), snap)
		return err
	}
	evilOfItsOwn := snapshot(ep("api-1", "10.0.0.1", "api", "a"), ep("api-2", "10.0.0.2", "api", "a"), ep("evil", "10.0.0.9", "evil", "b"))
	for name, tmpl := range map[string]string{
		"whereMeta emptied": `{{range $n, $s := groupByMeta "backend" (servicesWithTag "http")}}{{range endpoints (sortByMeta "weight" (whereMeta "zone" "a" $s))}}{{.HostPort}} {{end}}{{end}}`,
		"groups of groups":  `{{range $n, $s := groupByMeta "backend" (servicesWithTag "http")}}{{range $z, $zs := groupByMeta "zone" $s}}{{range endpoints $zs}}{{.HostPort}} {{end}}{{end}}{{end}}`,
		"endpointsBy":       `{{range $z, $s := groupByMeta "zone" (servicesWithTag "http")}}{{range $b, $eps := endpointsBy "backend" $s}}{{$b}} {{end}}{{end}}`,
	} {
		if err := render(tmpl, evilOfItsOwn); err != nil {
			t.Errorf("%s, a backend of its own in another zone: %v; want the render", name, err)
		}
	}
	oneGoodOfTwo := snapshot(ep("api-1", "10.0.0.1", "api", "a"), ep("api-2", "0.0.0.0", "api", "a"), ep("x", "10.0.0.3", "", "a"))
	for name, list := range map[string]string{
		"read twice":          `{{if endpoints $s}}{{range endpoints $s}}{{.HostPort}} {{end}}{{end}}`,
		"whereMeta twice":     `{{if endpoints (whereMeta "zone" "a" $s)}}{{range endpoints (whereMeta "zone" "a" $s)}}{{.HostPort}} {{end}}{{end}}`,
		"sortByMeta twice":    `{{if endpoints (sortByMeta "w" $s)}}{{range endpoints (sortByMeta "w" $s)}}{{.HostPort}} {{end}}{{end}}`,
		"a part and its part": `{{range endpoints $s}}{{.HostPort}} {{end}}{{range endpoints (whereMeta "zone" "a" $s)}}{{.HostPort}} {{end}}`,
	} {
		var guard *GuardError
		if err := render(`{{range $n, $s := groupByMeta "backend" (servicesWithTag "http")}}`+list+`{{end}}`, oneGoodOfTwo); !errors.As(err, &guard) {
			t.Errorf("one good service of two, %s: %v; want min_instances to refuse it", name, err)
		}
	}
}

// A render min_instances refused but installed (no file to keep yet)
// reports the services it left out, as any installed render does.
func TestGuardedRenderReportsRefusedServices(t *testing.T) {
	t.Parallel()
	g := newGroup(t, endpointsTemplate)
	set := g.set(t, TemplateConfig{MinInstances: 1})
	snap := snapshot(svc("evil", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80;"}))
	if res := g.r.Pass(context.Background(), set, snap); res.Installed != 1 {
		t.Fatalf("pass = %+v; want the render installed: there is no old file to keep", res)
	}
	if got := g.r.Health.Report(0).Groups[g.dest].Refused; len(got) != 1 || got[0].Service != "evil" {
		t.Fatalf("refused services in the health report: %+v; want evil", got)
	}
}

// Addresses a load balancer treats specially, or that reach the
// renderer's own host network, are refused always; host names are refused
// unless the template sets allow_hostnames (one nginx cannot resolve fails
// the whole group); loopback is allowed.
func TestAddressPolicy(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"0.0.0.0", "::", "[::]", "0.1.2.3", "::ffff:0.0.0.0",
		"255.255.255.255", "::ffff:255.255.255.255",
		"224.0.0.1", "239.255.255.250", "ff02::1", "ff05::2",
		"169.254.169.254", "169.254.0.1", "fe80::1", "::ffff:169.254.169.254",
		"fd00:ec2::254", "100.100.100.200", "64:ff9b::a9fe:a9fe", "64:ff9b::0.0.0.0",
		// The IPv6 addresses of metadata services whose IPv4 address is
		// link-local (refused above): Google Cloud's, AWS's EKS Pod
		// Identity Agent, Scaleway's; Azure's platform address and Oracle
		// Cloud Classic's metadata service.
		"fd20:ce::254", "[fd20:ce::254]", "fd20:ce:0:0:0:0:0:254", "fd00:ec2::23", "fd00:42::42",
		"168.63.129.16", "192.0.0.192", "::ffff:168.63.129.16", "64:ff9b::a83f:8110",
		"64:ff9b:1::a9fe:a9fe", "64:ff9b:1:a9fe:a9:fe00:a00:1", "2002:a9fe:a9fe::1", "2002:e000:1::",
		"::a9fe:a9fe", "::169.254.169.254", "::e000:1", "::0.0.0.2",
		"::ffff:0:169.254.169.254", "::ffff:0:6464:64c8",
		// nginx reads "unix:4711" as the UNIX socket ./4711.
		"unix", "UNIX", "Unix",
	} {
		if a, err := parseAddress("ip", v, addrRules{hostnames: true, loopback: true}); err == nil {
			t.Errorf("address %q accepted as %q", v, a)
		}
	}
	for _, v := range []string{"10.0.0.1", "192.168.1.1", "255.255.255.254", "2001:db8::1", "64:ff9b::a00:1", "100.100.100.201", "2002:a00:1::1", "::a00:1", "::ffff:0:a00:1"} {
		if _, err := parseAddress("ip", v, addrRules{}); err != nil {
			t.Errorf("address %q refused: %v", v, err)
		}
	}
	// Loopback, in any form that reaches it, only with allow_loopback:
	// else a service registered there reaches the load balancer's own
	// host (a stats page, the renderer's status page) or loops into it.
	for _, v := range []string{"127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1", "::7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::1", "::ffff:0:127.0.0.1"} {
		if _, err := parseAddress("ip", v, addrRules{}); err == nil || !strings.Contains(err.Error(), "allow_loopback") {
			t.Errorf("address %q without allow_loopback: %v; want it refused", v, err)
		}
		if _, err := parseAddress("ip", v, addrRules{loopback: true}); err != nil {
			t.Errorf("address %q with allow_loopback refused: %v", v, err)
		}
	}
	for _, v := range []string{"localhost", "LocalHost", "db.localhost", "localhost4", "localhost.localdomain", "ip6-localhost", "ip6-loopback"} {
		if _, err := parseAddress("host", v, addrRules{hostnames: true}); err == nil || !strings.Contains(err.Error(), "allow_loopback") {
			t.Errorf("host name %q without allow_loopback: %v; want it refused", v, err)
		}
		if _, err := parseAddress("host", v, addrRules{hostnames: true, loopback: true}); err != nil {
			t.Errorf("host name %q with allow_loopback refused: %v", v, err)
		}
	}
	for _, v := range []string{"unix.internal", "unixhost", "my-unix", "localhost.example", "notlocalhost"} {
		if _, err := parseAddress("host", v, addrRules{hostnames: true}); err != nil {
			t.Errorf("host name %q refused: %v", v, err)
		}
	}
	if _, err := parseAddress("host", "web.internal", addrRules{}); err == nil || !strings.Contains(err.Error(), "allow_hostnames") {
		t.Errorf("a host name without allow_hostnames: %v; want it refused", err)
	}

	snap := snapshot(
		svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80"}),
		svc("named", []string{"www"}, map[string]string{"host": "nonexistent-host.invalid", "port": "80"}),
		svc("metadata", []string{"www"}, map[string]string{"ip": "169.254.169.254", "port": "80"}),
		svc("any", []string{"www"}, map[string]string{"ip": "0.0.0.0", "port": "80"}),
		svc("self", []string{"www"}, map[string]string{"ip": "127.0.0.1", "port": "8404"}),
		svc("self-named", []string{"www"}, map[string]string{"host": "localhost", "port": "8404"}),
	)
	for _, tc := range []struct {
		hostnames, loopback bool
		want                string
		refusedByService    map[string]string
	}{
		{false, false, "server 10.0.0.1:80; # web-1\n", map[string]string{"named": "host", "metadata": "ip", "any": "ip", "self": "ip", "self-named": "host"}},
		{true, false, "server nonexistent-host.invalid:80; # named\nserver 10.0.0.1:80; # web-1\n", map[string]string{"metadata": "ip", "any": "ip", "self": "ip", "self-named": "host"}},
		{false, true, "server 127.0.0.1:8404; # self\nserver 10.0.0.1:80; # web-1\n", map[string]string{"named": "host", "metadata": "ip", "any": "ip", "self-named": "host"}},
		{true, true, "server nonexistent-host.invalid:80; # named\nserver 127.0.0.1:8404; # self\nserver localhost:8404; # self-named\nserver 10.0.0.1:80; # web-1\n", map[string]string{"metadata": "ip", "any": "ip"}},
	} {
		set := newSet(t, TemplateConfig{Contents: endpointsTemplate, Destination: filepath.Join(t.TempDir(), "out"), AllowHostnames: tc.hostnames, AllowLoopback: tc.loopback})
		out, refused, err := set.Groups[0].Templates[0].execute(context.Background(), snap)
		if err != nil || string(out) != tc.want {
			t.Errorf("allow_hostnames = %v, allow_loopback = %v: got %q, %v; want %q", tc.hostnames, tc.loopback, out, err, tc.want)
		}
		got := map[string]string{}
		for _, r := range refused {
			got[r.Service] = r.Field
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.refusedByService) {
			t.Errorf("allow_hostnames = %v, allow_loopback = %v: refused %v; want %v", tc.hostnames, tc.loopback, got, tc.refusedByService)
		}
	}
	set := newSet(t, TemplateConfig{Contents: `{{addr "web.internal"}}`, Destination: filepath.Join(t.TempDir(), "out")})
	if _, err := set.Groups[0].Templates[0].Render(snap); err == nil || !strings.Contains(err.Error(), "allow_hostnames") {
		t.Errorf("addr of a host name without allow_hostnames: %v", err)
	}
	set = newSet(t, TemplateConfig{Contents: `{{addr "Web.internal"}}`, Destination: filepath.Join(t.TempDir(), "out"), AllowHostnames: true})
	if out, err := set.Groups[0].Templates[0].Render(snap); err != nil || string(out) != "web.internal" {
		t.Errorf("addr of a host name with allow_hostnames: %q, %v", out, err)
	}
}

// A refused service is logged when its render first refuses it, not again
// while it stays refused; /healthz lists the first 100 and counts them all.
func TestRefusalsLoggedOnceAndHealthCapped(t *testing.T) {
	t.Parallel()
	g := newGroup(t, endpointsTemplate)
	var logs bytes.Buffer
	g.r = NewRenderer(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil)
	set := g.set(t, TemplateConfig{})
	services := []registry.Service{svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1", "port": "80"})}
	for i := 0; i < 150; i++ {
		services = append(services, svc(fmt.Sprintf("evil-%03d", i), []string{"www"}, map[string]string{"ip": "10.0.0.2", "port": "80;"}))
	}
	pass := func(services []registry.Service) (lines, more int) {
		t.Helper()
		logs.Reset()
		if res := g.r.Pass(context.Background(), set, snapshot(services...)); len(res.Failures) != 0 {
			t.Fatal(res.Failures)
		}
		return strings.Count(logs.String(), "service left out of the render"), strings.Count(logs.String(), "more refusals in the render")
	}
	if lines, more := pass(services); lines != 100 || more != 1 {
		t.Errorf("first render: %d log lines and %d summaries; want 100 and 1:\n%s", lines, more, logs.String())
	}
	rep := g.r.Health.Report(0).Groups[g.dest]
	if len(rep.Refused) != 100 || rep.RefusedCount != 150 || rep.Refused[0].Service != "evil-000" {
		t.Errorf("/healthz lists %d refusals (from %+v), counts %d; want 100 and 150", len(rep.Refused), rep.Refused[0], rep.RefusedCount)
	}
	if lines, more := pass(services); lines != 0 || more != 0 {
		t.Errorf("the same refusals again: %d log lines; want none:\n%s", lines, logs.String())
	}
	services = append(services, svc("evil-new", []string{"www"}, map[string]string{"ip": "0.0.0.0", "port": "80"}))
	if lines, _ := pass(services); lines != 1 || !strings.Contains(logs.String(), "service=evil-new") {
		t.Errorf("one new refusal: %d log lines; want one, naming it:\n%s", lines, logs.String())
	}
	if rep := g.r.Health.Report(0).Groups[g.dest]; len(rep.Refused) != 100 || rep.RefusedCount != 151 {
		t.Errorf("/healthz lists %d refusals, counts %d; want 100 and 151", len(rep.Refused), rep.RefusedCount)
	}
	// Fixed, then refused again: logged again.
	pass(services[:1])
	if lines, _ := pass(services[:3]); lines != 2 {
		t.Errorf("refused again after a fix: %d log lines; want 2:\n%s", lines, logs.String())
	}
}

// endpointsBy keeps names as given (HAProxy tells API from api), but of
// names that differ only in case, which nginx takes for one, it keeps the
// all-lowercase spelling (else the first) and reports the others'
// services: two such upstreams would fail nginx's whole config.
func TestEndpointsByCase(t *testing.T) {
	t.Parallel()
	tmpl := `{{range $b, $eps := endpointsBy "backend" services}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}`
	ep := func(id, backend string) registry.Service {
		return svc(id, nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": backend})
	}
	for _, tc := range []struct {
		name     string
		services []registry.Service
		want     string
		refused  []string
	}{
		{"one spelling, kept as given", []registry.Service{ep("a-1", "API"), ep("a-2", "API")}, "API:a-1 a-2 ", nil},
		{"the lowercase one kept", []registry.Service{ep("a-1", "API"), ep("a-2", "api"), ep("a-3", "Api")}, "api:a-2 ", []string{"a-1", "a-3"}},
		{"else the first", []registry.Service{ep("a-1", "Api"), ep("a-2", "API")}, "Api:a-1 ", []string{"a-2"}},
		// A service with a refused address does not choose the spelling:
		// it would leave its name with no server at all.
		{"not by a service whose data is refused", []registry.Service{ep("a-1", "API"), ep("a-2", "API"),
			svc("a-3", nil, map[string]string{"ip": "10.0.0.1", "backend": "api"})}, "API:a-1 a-2 ", []string{"a-3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(t.TempDir(), "out")})
			out, refused, err := set.Groups[0].Templates[0].execute(context.Background(), snapshot(tc.services...))
			var got []string
			for _, r := range refused {
				got = append(got, r.Service)
			}
			if err != nil || string(out) != tc.want || !slices.Equal(got, tc.refused) {
				t.Errorf("got %q, refused %q, %v; want %q, refused %q", out, got, err, tc.want, tc.refused)
			}
		})
	}
}

// A spelling endpointsBy kept stays while a good service has it: a service
// registered later with the lowercase spelling does not take the name,
// and with it the traffic, from the services already behind it; not
// across a reload of the templates either. Once no service has it, the
// lowercase rule chooses again.
func TestEndpointsByKeepsItsSpelling(t *testing.T) {
	t.Parallel()
	tmpl := `{{range $b, $eps := endpointsBy "backend" services}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}`
	ep := func(id, backend string) registry.Service {
		return svc(id, nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": backend})
	}
	cfg := TemplateConfig{Contents: tmpl, Destination: filepath.Join(t.TempDir(), "out")}
	set := newSet(t, cfg)
	render := func(set *Set, want string, wantRefused []string, services ...registry.Service) {
		t.Helper()
		out, refused, err := set.Groups[0].Templates[0].execute(context.Background(), snapshot(services...))
		var got []string
		for _, r := range refused {
			got = append(got, r.Service)
		}
		if err != nil || string(out) != want || !slices.Equal(got, wantRefused) {
			t.Errorf("got %q, refused %q, %v; want %q, refused %q", out, got, err, want, wantRefused)
		}
	}
	render(set, "API:a-1 a-2 ", nil, ep("a-1", "API"), ep("a-2", "API"))
	render(set, "API:a-1 a-2 ", []string{"a-0"}, ep("a-0", "api"), ep("a-1", "API"), ep("a-2", "API"))
	render(set, "API:a-1 ", []string{"a-0", "a-3"}, ep("a-0", "api"), ep("a-1", "API"), ep("a-3", "Api"))

	// A reload of the templates hands the spelling on.
	sets := make(chan *Set, 1)
	load := func() (Config, error) {
		c := Config{Templates: []TemplateConfig{cfg}}
		return c, c.Normalize()
	}
	NewReloader(nil, load, sets, set).Reload(context.Background(), "SIGHUP")
	next := <-sets
	next.Inherit(set) // as the render loop does when it takes the set
	render(next, "API:a-2 ", []string{"a-0"}, ep("a-0", "api"), ep("a-2", "API"))

	// Every API service gone for a moment (a rolling restart): api is
	// served meanwhile, and API takes its name back when it returns.
	render(next, "api:a-0 ", nil, ep("a-0", "api"))
	render(next, "API:a-1 ", []string{"a-0"}, ep("a-0", "api"), ep("a-1", "API"))
}

// endpointsByExact, for HAProxy, whose backends tell case apart, keeps
// every spelling as a name of its own and remembers none: a service that
// registers "API" while "api" has no service (before its first deploy,
// say) does not keep the api services out later, as it does with
// endpointsBy, which must keep one spelling for nginx.
func TestEndpointsByExactKeepsEverySpelling(t *testing.T) {
	t.Parallel()
	ep := func(id, backend string) registry.Service {
		return svc(id, nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": backend})
	}
	for _, tc := range []struct{ fn, want string }{
		{"endpointsBy", "API:evil "},
		{"endpointsByExact", "API:evil api:a-1 a-2 "},
	} {
		t.Run(tc.fn, func(t *testing.T) {
			tmpl := `{{range $b, $eps := ` + tc.fn + ` "backend" services}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}`
			set := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(t.TempDir(), "out")})
			tp := set.Groups[0].Templates[0]
			if _, _, err := tp.execute(context.Background(), snapshot(ep("evil", "API"))); err != nil {
				t.Fatal(err)
			}
			out, refused, err := tp.execute(context.Background(), snapshot(ep("a-1", "api"), ep("evil", "API"), ep("a-2", "api")))
			if err != nil || string(out) != tc.want {
				t.Fatalf("got %q, %v; want %q", out, err, tc.want)
			}
			if tc.fn == "endpointsByExact" && len(refused) != 0 {
				t.Errorf("refused %+v; want none", refused)
			}
		})
	}
	// A refused value is still refused.
	set := newSet(t, TemplateConfig{Contents: `{{range $b, $eps := endpointsByExact "backend" services}}{{$b}} {{end}}`, Destination: filepath.Join(t.TempDir(), "out")})
	out, refused, err := set.Groups[0].Templates[0].execute(context.Background(), snapshot(ep("a-1", "api"), ep("bad", "a b")))
	if err != nil || string(out) != "api " || len(refused) != 1 || refused[0].Service != "bad" {
		t.Errorf("got %q, refused %+v, %v; want api, bad refused", out, refused, err)
	}
}

// A remembered spelling stays while it is served, or, not served, for
// spellingGrace from the first render that found it so; then the spelling
// served meanwhile is remembered (a rename for good). Names a render did
// not see are kept as room allows.
func TestSpellingsChoose(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k := spellingKey("backend", "api")
	step := func(prev spellings, served string, at time.Time) spellings {
		next := spellings{}
		next.choose(prev, k, served, at)
		return next.merged(prev, at)
	}
	s := step(nil, "API", t0)
	if s.remembered(k) != "API" {
		t.Fatalf("first render: %+v", s)
	}
	s = step(s, "api", t0.Add(time.Minute)) // API has no good service
	s = step(s, "api", t0.Add(time.Minute+spellingGrace-time.Second))
	if s.remembered(k) != "API" {
		t.Fatalf("within the grace: %+v; want API remembered", s)
	}
	if back := step(s, "API", t0.Add(2*time.Minute)); back.remembered(k) != "API" || !back[k].absent.IsZero() {
		t.Fatalf("API served again: %+v", back)
	}
	s = step(s, "api", t0.Add(time.Minute+spellingGrace))
	if s.remembered(k) != "api" {
		t.Fatalf("past the grace: %+v; want api remembered", s)
	}
	// Two calls of one render over different lists: API served by one,
	// only api in the other's list. API stays, its grace never starts.
	s = step(nil, "API", t0)
	for i := range 3 {
		at := t0.Add(time.Duration(i+1) * spellingGrace)
		next := spellings{}
		next.choose(s, k, "API", at)
		next.choose(s, k, "api", at)
		if s = next.merged(s, at); s.remembered(k) != "API" || !s[k].absent.IsZero() {
			t.Fatalf("render %d with API served by one call of two: %+v", i, s)
		}
	}
	// Past the grace, a call that serves API still counts, whichever
	// call comes first.
	expired := spellings{k: {name: "API", absent: t0}}
	for _, order := range [][]string{{"api", "API"}, {"API", "api"}} {
		next := spellings{}
		for _, served := range order {
			next.choose(expired, k, served, t0.Add(spellingGrace))
		}
		if next.remembered(k) != "API" || !next[k].absent.IsZero() {
			t.Errorf("past the grace, calls serving %q in turn: %+v; want API, served", order, next)
		}
	}
	// A render that called endpointsBy not at all keeps what it had.
	if got := spellings(nil).merged(s, t0); got.remembered(k) != "API" {
		t.Fatalf("a render without endpointsBy: %+v", got)
	}
	// Names not seen are kept, up to maxSpellings besides those seen,
	// those seen last first when none was seen within spellingGrace.
	full := spellings{}
	for i := range maxSpellings + 10 {
		at := t0.Add(time.Duration(i) * time.Second)
		full[spellingKey("backend", fmt.Sprint("n", i))] = spelling{name: fmt.Sprint("N", i), seen: at, since: at}
	}
	got := step(full, "api", t0.Add(3*time.Hour))
	if len(got) != maxSpellings+1 || got.remembered(k) != "api" {
		t.Fatalf("merged %d names (api: %q); want %d with api", len(got), got.remembered(k), maxSpellings+1)
	}
	for _, i := range []int{0, 9} {
		if _, kept := got[spellingKey("backend", fmt.Sprint("n", i))]; kept {
			t.Errorf("n%d, seen before the others, was kept", i)
		}
	}
	if _, kept := got[spellingKey("backend", fmt.Sprint("n", maxSpellings+9))]; !kept {
		t.Error("the name seen last was dropped")
	}
	// The names seen within spellingGrace (a backend restarting among
	// them) are all kept, whatever the others; up to maxRecentSpellings,
	// past which those first served after the backend go first.
	now := t0.Add(100 * time.Hour)
	flood := spellings{}
	for i := range maxSpellings {
		flood[spellingKey("backend", fmt.Sprint("x", i))] = spelling{name: fmt.Sprint("X", i), since: now.Add(-2 * time.Minute), seen: now.Add(-time.Minute)}
	}
	b, gone := spellingKey("backend", "b"), spellingKey("backend", "gone")
	flood[b] = spelling{name: "B", since: now.Add(-time.Hour), seen: now.Add(-3 * time.Minute)}
	flood[gone] = spelling{name: "GONE", since: t0, seen: now.Add(-24 * time.Hour)}
	got = step(flood, "api", now)
	if got.remembered(b) != "B" || got.remembered(gone) != "GONE" || len(got) != maxSpellings+3 {
		t.Errorf("kept %d names, b %q, gone %q; want all %d", len(got), got.remembered(b), got.remembered(gone), maxSpellings+3)
	}
	for i := range maxRecentSpellings {
		flood[spellingKey("backend", fmt.Sprint("y", i))] = spelling{name: fmt.Sprint("Y", i), since: now.Add(-59 * time.Minute), seen: now.Add(-10 * time.Second)}
	}
	if got := step(flood, "api", now); got.remembered(b) != "B" || len(got) != maxRecentSpellings+2 {
		t.Errorf("past maxRecentSpellings, kept %d names, b %q; want b and %d", len(got), got.remembered(b), maxRecentSpellings+2)
	}
	// A name back after the grace is served anew: shown once long ago, it
	// does not count as served since then.
	y := spellingKey("backend", "y")
	for _, served := range []string{"Y", "y"} { // in its spelling, or another
		back := spellings{}
		back.choose(spellings{y: {name: "Y", since: t0, seen: t0}}, y, served, now)
		if !back[y].since.Equal(now) {
			t.Errorf("a name back as %q after %v served since %v; want since now", served, now.Sub(t0), back[y].since)
		}
	}
}

// A flood of new names while every service of a backend restarts does
// not push out its remembered spelling: the name stays the backend's.
func TestSpellingsOutlastAFloodOfNames(t *testing.T) {
	t.Parallel()
	tmpl := `{{range $b, $eps := endpointsBy "backend" services}}{{if eq (lower $b) "api"}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}{{end}}`
	ep := func(id, backend string) registry.Service {
		return svc(id, nil, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": backend})
	}
	tp := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(t.TempDir(), "out")}).Groups[0].Templates[0]
	render := func(list ...registry.Service) string {
		t.Helper()
		out, _, err := tp.execute(context.Background(), snapshot(list...))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	for range 2 { // the backend served over two renders, the flood's names at one
		if out := render(ep("victim-1", "API")); out != "API:victim-1 " {
			t.Fatalf("first renders: %q", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var flood []registry.Service
	for i := range maxSpellings + 1 {
		flood = append(flood, ep(fmt.Sprint("flood-", i), fmt.Sprint("x", i)))
	}
	render(flood...) // API's services restarting; maxSpellings names seen
	render()         // and gone again
	if out := render(ep("victim-1", "API"), ep("evil", "api")); out != "API:victim-1 " {
		t.Errorf("after a flood of names, the backend's services back: %q; want API:victim-1 (evil refused)", out)
	}
}

// A render that does not reach endpointsBy (its list is empty) after one
// that did keeps the remembered spellings; it once wrote into a nil map
// and took the renderer down.
func TestEndpointsBySkippedKeepsItsSpelling(t *testing.T) {
	t.Parallel()
	tmpl := `{{with servicesWithTag "http"}}{{range $b, $eps := endpointsBy "backend" .}}{{$b}}:{{range $eps}}{{.Name}} {{end}}{{end}}{{end}}`
	ep := func(id, backend string, tags ...string) registry.Service {
		return svc(id, tags, map[string]string{"ip": "10.0.0.1", "port": "80", "backend": backend})
	}
	set := newSet(t, TemplateConfig{Contents: tmpl, Destination: filepath.Join(t.TempDir(), "out")})
	tp := set.Groups[0].Templates[0]
	for i, tc := range []struct {
		services []registry.Service
		want     string
	}{
		{[]registry.Service{ep("a-1", "API", "http")}, "API:a-1 "},
		{[]registry.Service{ep("a-1", "API")}, ""},
		{[]registry.Service{ep("a-0", "api", "http"), ep("a-1", "API", "http")}, "API:a-1 "},
	} {
		if out, _, err := tp.execute(context.Background(), snapshot(tc.services...)); err != nil || string(out) != tc.want {
			t.Fatalf("render %d: %q, %v; want %q", i, out, err, tc.want)
		}
	}
}
