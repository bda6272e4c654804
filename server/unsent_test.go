package server_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// A client that sends a list read and never reads the answer holds the
// answer's bytes until its connection ends: past the account's share of
// MaxUnsentBytes (an eighth), the account's list reads are refused
// (rate-limited) rather than built and held; one account that did so on
// thousands of connections had the server hold 8 GB. Another account's
// reads go on, and the account's own once the answer is gone.
func TestUnreadListAnswersAreBounded(t *testing.T) {
	t.Parallel()
	const total = 16 << 20
	st := testserver.NewStore(t, testserver.Options{ReapInterval: -1, Limits: store.Limits{Services: 1001, ConfigValues: 10}})
	reg := prometheus.NewRegistry()
	base := serveCustom(t, st, server.Config{Store: st, Registerer: reg, MaxUnsentBytes: total})
	busy, other := devLogin(t, base, "busy"), devLogin(t, base, "other")
	// 1000 services of the largest metadata: a page of some 4.7 MB, more
	// than the kernel's buffers of a connection take. With the longest
	// timeout: under the race detector on a busy machine the test can
	// outlast a short one, and the page shrink as the services time out.
	var md []string
	for i := range 18 {
		md = append(md, fmt.Sprintf(`"k%02d":"%s"`, i, strings.Repeat("<", 255)))
	}
	parallel(1000, func(i int) {
		busy.do("POST", "/services", fmt.Sprintf(`{"id":"svc-%03d","heartbeat_timeout":120,"metadata":{%s}}`, i, strings.Join(md, ","))).want(201)
	})
	other.create("svc-1", 120)

	// The client reads nothing and takes as little as the kernel lets it.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1.0/%s/services?limit=1000 HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\n\r\n", busy.tenant, busy.token)
	// Reading and encoding the page takes a while under the race detector
	// on a busy machine (once over 90 s, with nothing written to the
	// client yet): wait longer than eventually does, and say what the
	// client got if the answer was never held.
	start := time.Now()
	for deadline := start.Add(4 * time.Minute); metric(t, reg, "svcreg_list_answer_bytes_unsent") <= total/8; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			got := make([]byte, 300)
			n, err := io.ReadFull(conn, got)
			t.Fatalf("the answer was never held for the client that does not read; the client got %q (%v); list reads waiting: %v",
				got[:n], err, metric(t, reg, "svcreg_list_reads_waiting"))
		}
	}
	t.Logf("the answer was held %v after the request", time.Since(start).Round(time.Millisecond))

	// Refused once their answers were made (read and encoded), the reads
	// count against the daily GET limit, as /limits does.
	before := busy.getsUsed()
	busy.do("GET", "/services?limit=1", nil).fault(400, "rateLimitReached", "Rate limit has been reached.",
		fmt.Sprintf("Limit of %d bytes of the account's list answers not yet taken by their clients has been reached", total/8))
	busy.do("GET", "/events", nil).want(400)
	if after := busy.getsUsed(); after != before+3 {
		t.Errorf("the daily GET count went from %d to %d over two refused reads and one answered; want %d", before, after, before+3)
	}
	if got := metric(t, reg, "svcreg_list_answers_refused_total"); got != 2 {
		t.Errorf("%v list answers counted refused, want 2", got)
	}
	// (A service of its own made now: under the race detector on a busy
	// machine the test can outlast the 120 s of the first ones.)
	busy.create("svc-late", 120)
	busy.do("GET", "/services/svc-late", nil).want(200)
	other.do("GET", "/services", nil).want(200)

	conn.Close()
	eventually(t, "the answer's bytes counted off once its connection ends", func() bool {
		return metric(t, reg, "svcreg_list_answer_bytes_unsent") == 0
	})
	busy.do("GET", "/services?limit=1", nil).want(200)
}
