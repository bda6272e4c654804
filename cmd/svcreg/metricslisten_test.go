package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// --metrics-listen serves /metrics on an address of its own and takes it
// off --listen, which every account reaches: the metrics count every
// account's requests and events.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	status := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	plain := startServerProcess(t, "--data-dir", t.TempDir())
	if code, body := status(plain.url + "/metrics"); code != 200 || !strings.Contains(body, "svcreg_list_reads_waiting") {
		t.Fatalf("without --metrics-listen, /metrics on --listen: %d", code)
	}

	port := strconv.Itoa(freePort(t))
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--metrics-listen", "127.0.0.1:"+port)
	if code, _ := status(srv.url + "/metrics"); code != 404 {
		t.Errorf("/metrics on --listen: %d, want 404", code)
	}
	if code, body := status("http://127.0.0.1:" + port + "/metrics"); code != 200 || !strings.Contains(body, "svcreg_list_reads_waiting") {
		t.Errorf("/metrics on --metrics-listen: %d, want 200 with the server's metrics", code)
	}
	for _, path := range []string{"/healthz", "/v1.0/1/services", "/"} {
		if code, _ := status("http://127.0.0.1:" + port + path); code != 404 {
			t.Errorf("%s on --metrics-listen: %d, want 404 (metrics alone)", path, code)
		}
	}
	if !strings.Contains(srv.out.String(), `msg="metrics listening" url=http://127.0.0.1:`+port+"/metrics") {
		t.Errorf("no log line of the metrics address:\n%s", srv.out.String())
	}
}
