// Package ui serves the registry dashboard: one page of hand-written HTML,
// CSS and JavaScript embedded in the binary, which talks to the server only
// through the public API (/v2.0/tokens and /v1.0), so it sees exactly what
// the API lets the signed-in account see.
package ui

import (
	"embed"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is sent with every UI answer: scripts, styles and
// requests only from the server itself, no inline script or style, no
// frames, no plugins. Registry data is always put into the page as text;
// this is the second line of defence.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var files = map[string]string{ // path under /ui/ → embedded file
	"":          "index.html",
	"app.js":    "app.js",
	"style.css": "style.css",
}

var contentTypes = map[string]string{
	"index.html": "text/html; charset=utf-8",
	"app.js":     "text/javascript; charset=utf-8",
	"style.css":  "text/css; charset=utf-8",
}

// Handler serves the dashboard under prefix (such as "/ui"): prefix itself
// redirects to prefix+"/", prefix+"/" is the page, and the page's script
// and style sheet sit beside it. Anything else is 404.
func Handler(prefix string) http.Handler {
	return ReadOnly(ContentSecurityPolicy, "no-cache", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == prefix {
			http.Redirect(w, r, prefix+"/", http.StatusMovedPermanently)
			return
		}
		name, ok := files[strings.TrimPrefix(p, prefix+"/")]
		if !ok || !strings.HasPrefix(p, prefix+"/") {
			http.NotFound(w, r)
			return
		}
		b, err := static.ReadFile("static/" + name)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentTypes[name])
		w.Write(b)
	}))
}

// ReadOnly serves h's pages to GET and HEAD only (405 otherwise), with the
// Content-Security-Policy csp, the Cache-Control cache, and headers that
// keep the pages out of frames, content sniffing, Referer headers and the
// reach of the pages that opened them.
func ReadOnly(csp, cache string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		// A page that opened this one (window.open) keeps no handle on
		// it to navigate it later.
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cache-Control", cache)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}
