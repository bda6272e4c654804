package server_test

import (
	"context"
	"encoding/json"
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
	k := startKeeping(t, kind, 500*time.Millisecond)
	rc := dialRaw(t, k.base)
	k.poll(rc, "first")
	if resp, body := rc.get("/v1.0/"+k.c.tenant+"/configuration/first", k.c.token); resp.StatusCode != http.StatusOK {
		t.Fatalf("next request on the answered connection: %d %s", resp.StatusCode, body)
	}
	k.poll(rc, "second")
	if !rc.closedByServer() {
		t.Error("an answered connection left idle was not closed")
	}

	// Kept far longer than the test waits, but not past a drain.
	k = startKeeping(t, kind, time.Hour)
	rc = dialRaw(t, k.base)
	k.poll(rc, "third")
	eventually(t, "the answered connection kept by the poller", func() bool {
		return metric(t, k.reg, "svcreg_longpolls_waiting") == 0 && metric(t, k.reg, "svcreg_connections_parked") == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k.h.Drain(ctx)
	if !rc.closedByServer() {
		t.Error("an answered connection was not closed by Drain")
	}
}

// keeping is a server served as in production, with the given
// ReadHeaderTimeout.
type keeping struct {
	t      *testing.T
	base   string
	h      *server.Server
	reg    *prometheus.Registry
	c      *api
	marker string // of the last event seen; "" for an empty feed
}

func startKeeping(t *testing.T, kind string, readHeaderTimeout time.Duration) *keeping {
	st := testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})
	reg := prometheus.NewRegistry()
	h := server.New(server.Config{Store: st, Registerer: reg, Auth: server.NewAuth(server.AuthConfig{Store: st, Dev: true})})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: readHeaderTimeout}
	served := make(chan error, 1)
	go func() { served <- h.Serve(hs, ln) }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	return &keeping{t: t, base: base, h: h, reg: reg, c: devLogin(t, base, "kept")}
}

// poll sends a long-poll on rc, writes the configuration value id once the
// poll has parked, and checks the answer.
func (k *keeping) poll(rc *rawConn, id string) {
	t := k.t
	t.Helper()
	// With no other connection open, the server holds none once the poll
	// has parked (its connection taken over): the event then commits after
	// the parking, not before.
	clientOf(k.c.base).CloseIdleConnections()
	req := "GET /v1.0/" + k.c.tenant + "/events?wait=30&marker=" + k.marker + " HTTP/1.1\r\nHost: test\r\nX-Auth-Token: " + k.c.token + "\r\n\r\n"
	if _, err := io.WriteString(rc.c, req); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the long-poll parked", func() bool {
		return metric(t, k.reg, "svcreg_longpolls_waiting") == 1 && metric(t, k.reg, "svcreg_connections_open") == 0 &&
			metric(t, k.reg, "svcreg_connections_parked") == 1
	})
	k.c.setConfig(id, "v")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("long-poll: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close || !strings.Contains(string(body), `"`+id+`"`) {
		t.Fatalf("long-poll answered %d (close %v) %s, %v; want 200 with %s, connection kept", resp.StatusCode, resp.Close, body, err, id)
	}
	// The next marker comes from the answer itself: a request of its own
	// could outlast the connection's idle time on a loaded machine.
	var answer struct{ Values []event }
	if err := json.Unmarshal(body, &answer); err != nil || len(answer.Values) == 0 {
		t.Fatalf("long-poll answer %s: %v", body, err)
	}
	k.marker = answer.Values[len(answer.Values)-1].ID
}
