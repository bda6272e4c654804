package registry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// A call whose context ends while the identity service has not answered
// the login returns then, with an error that names the login and where it
// went (not the registry); the login goes on for the calls that follow,
// which get its token: a short deadline of one caller does not fail the
// login the others share.
func TestUnansweredLoginIsNamedAndGoesOn(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	let := sync.OnceFunc(func() { close(release) })
	var logins atomic.Int32
	srv := testserver.Start(t, testserver.Options{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/tokens") {
				logins.Add(1)
				select {
				case <-release: // held until the test lets it through
				case <-r.Context().Done():
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}})
	t.Cleanup(let) // before the server closes
	c := newClient(t, srv, "held-login")
	ctx := testContext(t)

	// The login is held until the test releases it below: the calls that
	// return before are bounded by their own contexts.
	cause := errors.New("the caller's own reason")
	cctx, cancel := context.WithTimeoutCause(ctx, 100*time.Millisecond, cause)
	defer cancel()
	_, err := c.Limits(cctx)
	want := "registry: authenticate held-login: Post \"" + srv.AuthURL + "/tokens\": the caller's own reason"
	if err == nil || err.Error() != want || !errors.Is(err, cause) {
		t.Fatalf("a call whose context ended during the login: %v; want %q, matching its cause", err, want)
	}

	actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = c.Authenticate(actx)
	if err == nil || !strings.HasPrefix(err.Error(), "registry: authenticate held-login: Post \""+srv.AuthURL+"/tokens\": ") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Authenticate whose context ended during the login: %v; want the login's request named", err)
	}

	let()
	hb, err := c.Register(ctx, registry.Service{ID: "held-1", HeartbeatTimeout: 10}, registry.RegisterOptions{})
	if err != nil {
		t.Fatalf("Register once the login is answered: %v", err)
	}
	hb.Stop()
	if n := logins.Load(); n != 1 {
		t.Errorf("%d logins sent, want 1: the callers that stopped waiting left the login to go on", n)
	}
}

// multiCause is a cause of a type that is not comparable (a slice).
type multiCause []string

func (m multiCause) Error() string { return strings.Join(m, "; ") }

// A caller whose context ends, with a cause of a type that cannot be
// compared, while it waits for a login gets that cause: the client
// compares causes with errors.Is, which a comparison of such values
// would have made panic.
func TestLoginWaitEndedByAnUncomparableCause(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/tokens") {
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	}})
	c := newClient(t, srv, "held-login-cause")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(multiCause{"a", "b"}) })
	_, err := c.Limits(ctx)
	var mc multiCause
	if !errors.As(err, &mc) {
		t.Errorf("Limits: %v, want the caller's cause", err)
	}
}
