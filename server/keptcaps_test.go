package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
)

// The connection of an answered long-poll waits for its next request as an
// idle connection of its tenant, whether the poller keeps it or hands it
// back to the http.Server (over TLS): the tenant's idle cap closes the
// longest idle, and MaxConns closes the longest idle of all, not another
// tenant's younger one. One account parking short polls on new
// connections, never more than its waiting cap at once, had kept every
// answered one open.
func TestAnsweredLongPollConnsAreIdle(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		name := "plain"
		if overTLS {
			name = "TLS"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testAnsweredLongPollConnsAreIdle(t, overTLS)
		})
	}
}

func testAnsweredLongPollConnsAreIdle(t *testing.T, overTLS bool) {
	st := testserver.NewStore(t, testserver.Options{ReapInterval: -1})
	reg := prometheus.NewRegistry()
	h := server.New(server.Config{Store: st, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true}), Registerer: reg,
		MaxConns: 8, MaxWaiters: 4, MaxWaitersPerTenant: 2, MaxIdleConns: 4, MaxIdleConnsPerTenant: 2})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener = tcp
	dialer := func() (net.Conn, error) { return net.Dial("tcp", tcp.Addr().String()) }
	if overTLS {
		certs := httptest.NewUnstartedServer(nil)
		certs.StartTLS()
		cfg := certs.TLS.Clone()
		certs.Close()
		cfg.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(tcp, cfg)
		dialer = func() (net.Conn, error) {
			return tls.Dial("tcp", tcp.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		}
	}
	hs := &http.Server{ReadHeaderTimeout: time.Minute}
	go h.Serve(hs, ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Drain(ctx)
		hs.Close()
	})
	dial := func() *rawConn {
		c, err := dialer()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	}
	login := func(user string) (token, tenant string) {
		rc := dial()
		body := `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"` + user + `","apiKey":"dev"}}}`
		if _, err := rc.c.Write([]byte("POST /v2.0/tokens HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Access struct {
				Token struct {
					ID     string
					Tenant struct{ ID string }
				}
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out.Access.Token.ID, out.Access.Token.Tenant.ID
	}
	hogToken, hog := login("hog")
	victimToken, victimTenant := login("victim")
	var victim *rawConn
	const n = 30
	conns := make([]*rawConn, n)
	for i := range conns {
		if i == 10 { // the victim's keep-alive goes idle after ten of the hog's
			victim = dial()
			victim.get("/v1.0/"+victimTenant+"/limits", victimToken)
		}
		conns[i] = dial()
		resp, _ := conns[i].get("/v1.0/"+hog+"/events?wait=0.05", hogToken)
		if resp.StatusCode != 200 || resp.Header.Get("X-Registry-Wait") == "0s" || resp.Close {
			t.Fatalf("poll %d: %d, X-Registry-Wait %q; want it parked and answered", i, resp.StatusCode, resp.Header.Get("X-Registry-Wait"))
		}
	}
	// The last answered connections go idle, and close the oldest past
	// the cap, in the server's own time: wait for that before probing.
	closed := func(rc *rawConn) bool {
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		_, err := rc.br.Peek(1)
		rc.c.SetReadDeadline(time.Time{})
		return err != nil && !isTimeout(err)
	}
	eventually(t, "the server to close all but its idle cap (2) of the tenant's answered connections", func() bool {
		shut := 0
		for _, rc := range conns {
			if closed(rc) {
				shut++
			}
		}
		return shut >= n-2
	})
	open := 0
	for _, rc := range conns {
		rc.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := rc.c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")); err != nil {
			continue
		}
		if resp, err := http.ReadResponse(rc.br, nil); err == nil && resp.StatusCode == http.StatusOK {
			open++
		}
	}
	if open > 2 {
		t.Errorf("the tenant holds %d of its %d answered connections open; want its idle cap, 2", open, n)
	}
	victim.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := victim.br.ReadByte(); !isTimeout(err) {
		t.Errorf("the other tenant's idle connection, younger than the hog's first ones: %v; want it open", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
