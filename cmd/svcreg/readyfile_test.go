package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// --ready-file holds the base URL of the server once it listens, so that
// a script started with --listen 127.0.0.1:0 learns the port; the file
// goes when the server stops.
func TestServerReadyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newOutput()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--ready-file", ready},
			nil, &bytes.Buffer{}, out)
	}()
	url := waitReadyFile(t, ready, out)
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("GET the ready file's URL %q: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/healthz: %s", url, resp.Status)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d; output:\n%s", code, out.String())
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Fatalf("the ready file outlives the server: %v", err)
	}
}
