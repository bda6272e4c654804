// Package statuspage serves svcreg template's read-only status page: the
// registry connection, each reload group's last steps and installed diff,
// and small server-side SVG plots of the last hour. It is plain HTML with
// no script; every value is escaped by html/template.
package statuspage

import (
	"bytes"
	_ "embed"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/internal/ui"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
)

//go:embed page.html
var pageHTML string

//go:embed status.css
var styleCSS []byte

// The page's text that may hold registry data (the installed change,
// errors, refusals) goes through shown: a bidirectional override or a
// zero-width character in it would make the page show other text than
// the file or the registry holds. Line by line: one line's escape does
// not change how the others (other files of the group) show.
var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"shown": shown,
	"when":  when,
	"secs": func(f float64) string {
		return (time.Duration(f * float64(time.Second))).Round(100 * time.Millisecond).String()
	},
}).Parse(pageHTML))

// shown is printable.Lines as HTML, each run of escapes (a doubled
// backslash too) marked as one (class esc): the text "\u200b" and an
// escaped zero-width space read alike, but only the second is marked.
// Past maxMarkedRuns runs, the rest of the text is marked as a whole
// (class "esc rest"). An element an escape made a 64 KiB change of
// control characters 64,000 elements, laid out again at every refresh of
// the page; text and escapes in turn ("a\x7fa\x7f…") would still make
// one a character.
func shown(s string) template.HTML {
	var b strings.Builder
	runs, open, rest := 0, false, false
	printable.WriteLines(s, func(t string) {
		if t != "" && open && !rest {
			b.WriteString(`</span>`)
			open = false
		}
		b.WriteString(template.HTMLEscapeString(t))
	}, func(e string) {
		switch {
		case open:
		case runs == maxMarkedRuns:
			b.WriteString(`<span class="esc rest" title="more escapes than are marked one by one">`)
			open, rest = true, true
		default:
			b.WriteString(`<span class="esc">`)
			open, runs = true, runs+1
		}
		b.WriteString(template.HTMLEscapeString(e))
	})
	if open {
		b.WriteString(`</span>`)
	}
	return template.HTML(b.String())
}

// maxMarkedRuns is how many runs of escapes a text marks one by one.
const maxMarkedRuns = 1000

// ContentSecurityPolicy allows the page's own style sheet and nothing
// else: no script at all.
const ContentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Config is what the page shows besides the renderer's own state.
type Config struct {
	Health *render.Health
	Status *render.Status
	// Registry is the registry's URL, or the URLs of its nodes; user info
	// and query are never shown.
	Registry string
	// InUse, if not nil and Registry lists several URLs, returns the one
	// the client uses now (registry.Client.URL).
	InUse func() string
	// Account names who the renderer signs in as: a username, or a note
	// that a token is used. Never a secret.
	Account string
	// Refresh is how often the page reloads itself; 5s if zero.
	Refresh time.Duration
	Logger  *slog.Logger
}

// Handler serves the page at "/" and its style sheet at "/status.css".
func Handler(c Config) http.Handler {
	if c.Refresh == 0 {
		c.Refresh = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(registry.Config{URL: c.Registry}.URLs()) < 2 {
		c.InUse = nil // one URL: always the one in use
	}
	reg := registry.PublicURL(c.Registry)
	return ui.ReadOnly(ContentSecurityPolicy, "no-store", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			var buf bytes.Buffer
			if err := page.Execute(&buf, build(c, reg)); err != nil {
				c.Logger.Error("status page", "err", err)
				http.Error(w, "the status page failed; see the log", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(buf.Bytes())
		case "/status.css":
			w.Header().Set("Content-Type", "text/css; charset=utf-8")
			w.Write(styleCSS)
		default:
			http.NotFound(w, r)
		}
	}))
}

type view struct {
	Now      time.Time
	Refresh  int
	Registry string
	InUse    string // of several URLs, the one in use
	Account  string
	Health   render.Report
	Status   render.StatusReport
	Groups   []groupView
	Renders  plot
	Latency  plot
}

type groupView struct {
	Name  string
	Steps []stepView
	render.GroupStatus
	Refused []render.Refusal
}

type stepView struct {
	Name   string
	Result *render.StepResult
}

func build(c Config, reg string) view {
	v := view{Now: time.Now(), Refresh: int(c.Refresh / time.Second), Registry: reg, Account: c.Account}
	if c.InUse != nil {
		v.InUse = registry.PublicURL(c.InUse())
	}
	if v.Refresh < 1 {
		v.Refresh = 1
	}
	if c.Health != nil {
		v.Health = c.Health.Report(0)
	}
	if c.Status != nil {
		v.Status = c.Status.Report()
		v.Now = v.Status.At
	}
	byName := map[string]render.GroupStatus{}
	var names []string
	for _, g := range v.Status.Groups {
		byName[g.Name] = g
		names = append(names, g.Name)
	}
	var extra []string
	for name := range v.Health.Groups {
		if _, ok := byName[name]; !ok {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range append(names, extra...) {
		gv := groupView{Name: name, GroupStatus: byName[name]}
		if gh := v.Health.Groups[name]; gh != nil {
			gv.Steps = []stepView{{"render", gh.Render}, {"check", gh.Check}, {"install", gh.Install}, {"reload", gh.Reload}}
			gv.Refused = gh.Refused
		}
		v.Groups = append(v.Groups, gv)
	}
	v.Renders = rendersPlot(v.Now, v.Status.Renders)
	v.Latency = latencyPlot(v.Now, v.Status.Installs)
	return v
}

// when shows a time as UTC and how long ago it was.
func when(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	ago := now.Sub(t).Round(time.Second)
	if ago < 0 {
		ago = 0
	}
	return t.UTC().Format("15:04:05 UTC") + " (" + ago.String() + " ago)"
}

// LoopbackOnly serves h for requests that reached a loopback address only
// if they name it by an IP address or localhost, when ln listens on
// loopback or on every address: a web page the operator's browser opens
// elsewhere could otherwise read the status page (the installed files'
// diffs, the refused services) by a DNS name it points at 127.0.0.1 (DNS
// rebinding), with the page's origin. A request with another Host gets
// 421. A request that reached another address, and a listener on one,
// are served whatever their Host: a name that points at a machine's own
// network address is how it is reached, and cannot be told from one that
// rebinds.
func LoopbackOnly(ln net.Addr, h http.Handler) http.Handler {
	tcp, ok := ln.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() && !tcp.IP.IsUnspecified() {
		return h
	}
	hostname, _ := os.Hostname()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok && !local.IP.IsLoopback() {
			h.ServeHTTP(w, r)
			return
		}
		if !loopbackName(hostOf(r.Host), hostname) {
			http.Error(w, "this listener is on loopback: address it by IP address, localhost or the machine's host name", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// AddressedOnly serves h only for requests that name the server by an IP
// address, localhost, the machine's host name (loopbackName) or a name
// without a dot (a container's, a compose service's, a short name in a
// search domain), whatever address they reached: for a server whose
// credentials every web page knows (--dev), which any name pointed at it
// (DNS rebinding) would open to the pages the operator's browser visits.
// A web page can point only names of the public DNS at an address, and
// those have a dot. LoopbackOnly is not enough there: a server in a
// container, published on the host's loopback, sees its requests reach
// the container's own address. Others get 421.
func AddressedOnly(h http.Handler) http.Handler {
	hostname, _ := os.Hostname()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host := hostOf(r.Host); strings.Contains(host, ".") && !loopbackName(host, hostname) {
			http.Error(w, "address this server by IP address, localhost, the machine's host name or a name without a dot: it accepts anyone (--dev), and a web page could reach it by a DNS name it points here", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostOf is hostport without its port, if it has one.
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// loopbackName reports whether host (without its port) is a name a
// request that reached loopback may use: an IP address, localhost, the
// machine's hostname (which Debian, say, points at 127.0.1.1), or none (a
// health check over HTTP/1.0; browsers always send one). A web page can
// point no other name at loopback for its requests to carry.
func loopbackName(host, hostname string) bool {
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return true
	}
	return hostname != "" && strings.EqualFold(host, hostname)
}
