package watcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/watcher"
)

// refusedClient is a client whose API key the registry refuses.
func refusedClient(t *testing.T) *registry.Client {
	t.Helper()
	srv := testserver.Start(t, testserver.Options{})
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: "watch-refused", APIKey: "not-the-key"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Credentials the registry refuses are retried (they may be fixed on
// the server), with a backoff that reaches its cap and stays there, and
// each retry's log line says that the credentials were refused.
func TestWatcherRetriesRefusedCredentialsUpToTheCap(t *testing.T) {
	t.Parallel()
	var logs testserver.Buffer
	const maxBackoff = 400 * time.Millisecond
	w := start(t, watcher.Config{Client: refusedClient(t), MaxBackoff: maxBackoff,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	type line struct {
		Msg     string        `json:"msg"`
		Level   string        `json:"level"`
		RetryIn time.Duration `json:"retry_in"`
	}
	var retries []line
	deadline := time.Now().Add(30 * time.Second)
	for len(retries) < 7 {
		if time.Now().After(deadline) {
			t.Fatalf("%d retries logged; want 7:\n%s", len(retries), logs.String())
		}
		time.Sleep(50 * time.Millisecond)
		retries = retries[:0]
		for _, s := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var l line
			if json.Unmarshal([]byte(s), &l) == nil && l.RetryIn > 0 {
				retries = append(retries, l)
			}
		}
	}
	for i, l := range retries {
		if !strings.HasPrefix(l.Msg, watcher.CredentialsRefused) || l.Level != "ERROR" {
			t.Errorf("retry %d logged as %s %q; want an error that says the credentials were refused", i, l.Level, l.Msg)
		}
		if l.RetryIn > maxBackoff {
			t.Errorf("retry %d in %v, past the cap %v", i, l.RetryIn, maxBackoff)
		}
	}
	// 100ms, 200ms, 400ms, then the cap (each jittered down by up to half).
	for i, l := range retries[3:] {
		if l.RetryIn < maxBackoff/2 {
			t.Errorf("retry %d in %v; want the cap, %v (jittered to no less than half)", i+3, l.RetryIn, maxBackoff)
		}
	}
	if st := w.Status(); st.Synced || !strings.Contains(st.LastError, "401") {
		t.Errorf("status %+v; want unsynced, with the 401 as the last error", st)
	}
}

// A one-shot command's watcher (StopOnRefusedCredentials) ends at the
// first refusal, with an error that says so, instead of retrying.
func TestWatcherStopsOnRefusedCredentials(t *testing.T) {
	t.Parallel()
	w := watcher.New(watcher.Config{Client: refusedClient(t), StopOnRefusedCredentials: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := w.Run(ctx)
	if !errors.Is(err, registry.ErrUnauthorized) || !strings.Contains(err.Error(), watcher.CredentialsRefused) {
		t.Fatalf("Run = %v; want the refused credentials", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v to give up on refused credentials", d)
	}
}
