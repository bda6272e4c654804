package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
)

// An answered long-poll's connection, which the server keeps without a
// goroutine until its next request, serves that request and a next
// long-poll; it is closed once it stays idle for the http.Server's
// ReadHeaderTimeout, and when the server drains.
func TestLongPollKeptConnection(t *testing.T) { onEachStore(t, testLongPollKeptConnection) }

func testLongPollKeptConnection(t *testing.T, kind string) {
	t.Parallel()
	st := testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})
	reg := prometheus.NewRegistry()
	h := server.New(server.Config{Store: st, Registerer: reg, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true})})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 500 * time.Millisecond}
	served := make(chan error, 1)
	go func() { served <- h.Serve(hs, ln) }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	c := devLogin(t, base, "kept")
	marker := "" // the feed is empty
	poll := func(rc *rawConn, id string) {
		t.Helper()
		req := "GET /v1.0/" + c.tenant + "/events?wait=30&marker=" + marker + " HTTP/1.1\r\nHost: test\r\nX-Auth-Token: " + c.token + "\r\n\r\n"
		if _, err := io.WriteString(rc.c, req); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the long-poll waiting", func() bool { return metric(t, reg, "svcreg_longpolls_waiting") == 1 })
		c.setConfig(id, "v")
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatalf("long-poll: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || resp.Close || !strings.Contains(string(body), `"`+id+`"`) {
			t.Fatalf("long-poll answered %d (close %v) %s, %v; want 200 with %s, connection kept", resp.StatusCode, resp.Close, body, err, id)
		}
		evs := c.events("")
		marker = evs[len(evs)-1].ID
	}

	rc := dialRaw(t, base)
	poll(rc, "first")
	if resp, body := rc.get("/v1.0/"+c.tenant+"/configuration/first", c.token); resp.StatusCode != http.StatusOK {
		t.Fatalf("next request on the answered connection: %d %s", resp.StatusCode, body)
	}
	poll(rc, "second")
	if !rc.closedByServer() {
		t.Error("an answered connection left idle was not closed")
	}

	rc = dialRaw(t, base)
	poll(rc, "third")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.Drain(ctx)
	if !rc.closedByServer() {
		t.Error("an answered connection was not closed by Drain")
	}
}
