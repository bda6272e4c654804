package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// A fault repeats values of the request (the URL of an unknown page, an
// unsupported Content-Type, a bad ?type= or ?limit=) cut to a bound: a
// request line or header of bytes that JSON writes six times as long
// (not UTF-8) must not get an answer several times its own size, which
// the server holds until its client takes it, credentials or not.
func TestFaultsEchoBoundedValues(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newAPI(t, srv)
	addr := strings.TrimPrefix(srv.URL, "http://")
	junk := strings.Repeat("\x80", 60000)
	digits := strings.Repeat("9", 60000)
	// A heartbeat's path id is not checked against the id rule before
	// its 404 (spec §5.1), and an escaped control character is three
	// bytes of the request line that JSON writes as six.
	controls := strings.Repeat("%01", 20000)
	for _, tc := range []struct {
		name, target, header string
		status               int
	}{
		{"unknown page, no credentials", "/x" + junk, "", 404},
		{"unknown API route", "/v1.0/" + c.tenant + "/nothing/" + junk, "X-Auth-Token: " + c.token + "\r\n", 404},
		{"content type, no credentials", "/v1.0/" + c.tenant + "/services", "Content-Type: " + junk + "\r\n", 400},
		{"event type", "/v1.0/" + c.tenant + "/events?type=" + junk, "X-Auth-Token: " + c.token + "\r\n", 400},
		{"limit", "/v1.0/" + c.tenant + "/services?limit=" + digits, "X-Auth-Token: " + c.token + "\r\n", 400},
		{"heartbeat of an impossible id", "/v1.0/" + c.tenant + "/services/" + controls + "/heartbeat", "X-Auth-Token: " + c.token + "\r\n", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := "GET " + tc.target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + tc.header + "Connection: close\r\n\r\n"
			if strings.HasSuffix(tc.target, "/heartbeat") {
				body := `{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`
				req = "POST " + tc.target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + tc.header +
					"Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
			}
			go io.WriteString(conn, req)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tc.status, body)
			}
			if len(body) > 16<<10 {
				t.Errorf("a %d-byte request got a %d-byte fault", len(req), len(body))
			}
			var f struct {
				Message string `json:"message"`
				Details any    `json:"details"`
			}
			if err := json.Unmarshal(body, &f); err != nil {
				t.Fatalf("fault %.200s: %v", body, err)
			}
			if text, _ := json.Marshal(f.Details); !strings.Contains(string(text), "bytes)") {
				t.Errorf("details %.300s do not say the value was cut", text)
			}
		})
	}
}
