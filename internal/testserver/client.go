package testserver

import (
	"net/http"
	"sync"
)

// clients are the tests' clients, one for each server (by root URL).
var clients sync.Map

// Client is the tests' client of the server at base (its root URL, as
// http://127.0.0.1:port). It never follows a redirect: the API never
// redirects (spec §2.1), so a redirect is an answer to check.
//
// A client for each server, so that a test that closes its idle
// connections (when its server restarts or stops) closes no other
// test's: a request of another test that had just taken such a
// connection failed ("http: CloseIdleConnections called"), a POST or PUT
// not being sent again.
func Client(base string) *http.Client {
	if c, ok := clients.Load(base); ok {
		return c.(*http.Client)
	}
	c, _ := clients.LoadOrStore(base, &http.Client{
		Transport:     &http.Transport{MaxIdleConnsPerHost: 200},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	})
	return c.(*http.Client)
}
