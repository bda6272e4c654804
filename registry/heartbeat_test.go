package registry_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// beats returns HeartbeatOptions whose OnBeat sends every beat on the
// returned channel.
func beats(opts registry.HeartbeatOptions) (registry.HeartbeatOptions, <-chan registry.Beat) {
	ch := make(chan registry.Beat, 1000)
	opts.OnBeat = func(b registry.Beat) { ch <- b }
	return opts, ch
}

func nextBeat(t *testing.T, ch <-chan registry.Beat) registry.Beat {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(30 * time.Second):
		t.Fatal("no heartbeat")
		return registry.Beat{}
	}
}

// TestHeartbeaterRetries: failed heartbeats are retried with the same
// token, whether the registry never saw them (5xx before it) or answered
// and the answer was lost (the registry hands out the same next token
// again); a 404 stops the heartbeater.
func TestHeartbeaterRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		after bool
	}{
		{"failed before the registry", false},
		{"answer lost", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, c := proxied(t, "hb-retry", testserver.Options{})
			ctx := testContext(t)
			token, err := c.CreateService(ctx, registry.Service{ID: "hb-1", HeartbeatTimeout: 30})
			if err != nil {
				t.Fatal(err)
			}
			p.fail(rule{match: "/heartbeat", n: 4, status: http.StatusServiceUnavailable, after: tt.after})
			opts, ch := beats(registry.HeartbeatOptions{Interval: 20 * time.Millisecond})
			hb := c.StartHeartbeat(ctx, "hb-1", token, 30, opts)
			defer hb.Stop()

			for i := 1; i <= 4; i++ {
				b := nextBeat(t, ch)
				var e *registry.Error
				if !errors.As(b.Err, &e) || e.StatusCode != http.StatusServiceUnavailable || b.Failures != i || b.Overdue {
					t.Fatalf("beat %d: %+v, want failure %d with 503", i, b, i)
				}
			}
			b := nextBeat(t, ch)
			if b.Err != nil || b.Failures != 0 || b.Token == "" || b.Token == token {
				t.Fatalf("beat 5: %+v, want a success with a new token", b)
			}
			if hb.Token() != b.Token || hb.LastSuccess().IsZero() || !hb.Deadline().After(b.Time) {
				t.Errorf("heartbeater state: token %q last success %v deadline %v", hb.Token(), hb.LastSuccess(), hb.Deadline())
			}
			if n := p.count("/heartbeat", 0); n < 5 {
				t.Errorf("%d heartbeat requests, want at least 5", n)
			}
			// Every attempt sent the create token until one succeeded: the
			// later beats go on from the new token.
			if b := nextBeat(t, ch); b.Err != nil {
				t.Fatalf("beat 6: %v", b.Err)
			}

			if err := c.DeleteService(ctx, "hb-1"); err != nil {
				t.Fatal(err)
			}
			var last registry.Beat
			for last = nextBeat(t, ch); last.Err == nil; last = nextBeat(t, ch) {
			}
			<-hb.Done()
			if !errors.Is(last.Err, registry.ErrNotFound) || !errors.Is(hb.Err(), registry.ErrNotFound) {
				t.Errorf("after delete: beat %v, Err %v; want ErrNotFound", last.Err, hb.Err())
			}
			select {
			case b := <-ch:
				t.Errorf("a beat after the 404: %+v", b)
			default:
			}
		})
	}
}

// TestHeartbeaterWaitsOutRetryAfter: a heartbeat refused with a
// Retry-After (an etcd node's budget of moves) is not retried at once, as
// other failures are, but after the wait asked for.
func TestHeartbeaterWaitsOutRetryAfter(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "hb-retry-after", testserver.Options{})
	ctx := testContext(t)
	token, err := c.CreateService(ctx, registry.Service{ID: "hb-1", HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	p.fail(rule{match: "/heartbeat", n: 1, status: http.StatusBadRequest, typ: "rateLimitReached", retryAfter: "1"})
	opts, ch := beats(registry.HeartbeatOptions{Interval: 20 * time.Millisecond})
	hb := c.StartHeartbeat(ctx, "hb-1", token, 30, opts)
	defer hb.Stop()
	refused := nextBeat(t, ch)
	if !errors.Is(refused.Err, registry.ErrRateLimited) || registry.RetryAfter(refused.Err) != time.Second {
		t.Fatalf("first beat: %+v, want rateLimitReached with a RetryAfter of 1s", refused)
	}
	next := nextBeat(t, ch)
	if next.Err != nil {
		t.Fatalf("second beat: %v", next.Err)
	}
	if d := next.Time.Sub(refused.Time); d < time.Second {
		t.Errorf("retried %v after the refusal, before its Retry-After of 1s", d)
	}
}

// TestTokenlessAnswers: a 2xx answer without a token (a proxy's page, an
// empty body) is no heartbeat's answer. The heartbeater keeps its token and
// sends it again: had it taken "", every later heartbeat would be refused
// (400, never 404) and the service time out while it ran on. A create so
// answered may have been made.
func TestTokenlessAnswers(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "hb-tokenless", testserver.Options{})
	ctx := testContext(t)
	token, err := c.CreateService(ctx, registry.Service{ID: "hb-1", HeartbeatTimeout: 30})
	if err != nil {
		t.Fatal(err)
	}
	p.fail(rule{match: "/heartbeat", n: 1, status: http.StatusOK, after: true})
	opts, ch := beats(registry.HeartbeatOptions{Interval: 20 * time.Millisecond})
	hb := c.StartHeartbeat(ctx, "hb-1", token, 30, opts)
	defer hb.Stop()
	if b := nextBeat(t, ch); b.Err == nil || !strings.Contains(b.Err.Error(), "without a heartbeat token") || !registry.Temporary(b.Err) || b.Token != "" {
		t.Fatalf("beat 1: %+v; want a temporary failure: no token", b)
	}
	if hb.Token() != token {
		t.Fatalf("token after a tokenless answer %q; want the create's, %q", hb.Token(), token)
	}
	for i := 2; i <= 3; i++ {
		if b := nextBeat(t, ch); b.Err != nil || b.Token == "" {
			t.Fatalf("beat %d: %+v; want a success with a token", i, b)
		}
	}
	// Stop cancels a heartbeat on its way, but the registry may still
	// receive it after Stop returned: the rule names the create alone.
	hb.Stop()
	p.fail(rule{match: "/services", end: true, n: 1, status: http.StatusOK, after: true})
	if token, err := c.CreateService(ctx, registry.Service{ID: "hb-2", HeartbeatTimeout: 30}); !errors.Is(err, registry.ErrOutcomeUnknown) || token != "" {
		t.Errorf("create answered without a token: %q, %v; want ErrOutcomeUnknown", token, err)
	}
}

// TestHeartbeaterWaitsForASlowRegistry: a registry that answers every
// heartbeat in 3.5 s, under a third of the 12 s timeout, keeps the service
// (at this scale, a loaded machine's delays leave the margins whole).
// An attempt is given up after a quarter of the timeout at first (a dead
// connection), but the next waits twice as long, and once answers come
// the attempts wait three times what they took (at most half the
// timeout).
func TestHeartbeaterWaitsForASlowRegistry(t *testing.T) {
	t.Parallel()
	var slow atomic.Bool
	srv := testserver.Start(t, testserver.Options{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !slow.Load() || !strings.HasSuffix(r.URL.Path, "/heartbeat") {
				h.ServeHTTP(w, r)
				return
			}
			// The registry acts at once; its answer arrives 3.5 s later.
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
			select {
			case <-time.After(3500 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			maps.Copy(w.Header(), rec.Header())
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	}})
	c := newClient(t, srv, "hb-slow")
	ctx := testContext(t)
	token, err := c.CreateService(ctx, registry.Service{ID: "hb-1", HeartbeatTimeout: 12})
	if err != nil {
		t.Fatal(err)
	}
	slow.Store(true)
	opts, ch := beats(registry.HeartbeatOptions{Interval: time.Second})
	hb := c.StartHeartbeat(ctx, "hb-1", token, 12, opts)
	defer hb.Stop()
	ok := 0
	var seen []string
	for i := 0; ok < 3; i++ {
		b := nextBeat(t, ch)
		seen = append(seen, fmt.Sprintf("%s %v", b.Time.Format("15:04:05.000"), b.Err))
		switch {
		case errors.Is(b.Err, registry.ErrNotFound):
			t.Fatalf("beat %d: the service timed out; beats:\n%s", i, strings.Join(seen, "\n"))
		case i == 30:
			t.Fatalf("%d heartbeats answered of 30 sent; want every answer after the first taken", ok)
		case b.Err == nil:
			ok++
		}
	}
}

// An attempt that was sent and got no answer (its connection broke; with
// several URLs, a node's own time ran out before the attempt's) may have
// been taken: the interval to the next heartbeat counts from its send, as
// for one given up. Before, it counted from the retry answered, up to
// the attempt's time later, and a long interval then passed the deadline
// the first attempt had set.
func TestHeartbeatWithoutAnAnswerCountsTheInterval(t *testing.T) {
	t.Parallel()
	var armed, broken atomic.Bool
	srv := testserver.Start(t, testserver.Options{ReapInterval: 100 * time.Millisecond, Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !armed.Load() || !strings.HasSuffix(r.URL.Path, "/heartbeat") || broken.Swap(true) {
				h.ServeHTTP(w, r)
				return
			}
			// The registry acts at once; the connection breaks 3.8 s
			// later, within the attempt's time (a quarter of the
			// timeout), with no answer.
			h.ServeHTTP(httptest.NewRecorder(), r.WithContext(context.WithoutCancel(r.Context())))
			select {
			case <-time.After(3800 * time.Millisecond):
			case <-r.Context().Done():
			}
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		})
	}})
	c := newClient(t, srv, "hb-unanswered")
	ctx := testContext(t)
	token, err := c.CreateService(ctx, registry.Service{ID: "hb-1", HeartbeatTimeout: 16})
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	opts, ch := beats(registry.HeartbeatOptions{Interval: 14500 * time.Millisecond})
	hb := c.StartHeartbeat(ctx, "hb-1", token, 16, opts)
	defer hb.Stop()
	var seen []string
	for ok := 0; ok < 2; {
		b := nextBeat(t, ch)
		seen = append(seen, fmt.Sprintf("%s %v", b.Time.Format("15:04:05.000"), b.Err))
		switch {
		case errors.Is(b.Err, registry.ErrNotFound):
			t.Fatalf("the service timed out; beats:\n%s", strings.Join(seen, "\n"))
		case b.Err == nil:
			ok++
		case !errors.Is(b.Err, registry.ErrOutcomeUnknown):
			t.Fatalf("a heartbeat failed otherwise than without an answer: %v", b.Err)
		}
	}
	if !broken.Load() {
		t.Fatal("no heartbeat went without an answer")
	}
}

// TestHeartbeaterOverdue: while heartbeats fail past the deadline the
// heartbeater keeps retrying and says the deadline has passed; a late
// heartbeat the registry still accepts puts it back on schedule.
func TestHeartbeaterOverdue(t *testing.T) {
	t.Parallel()
	p := &proxy{}
	// No reaper: a late heartbeat is accepted until something rectifies.
	srv := testserver.Start(t, testserver.Options{Wrap: p.wrap, ReapInterval: -1})
	c := newClient(t, srv, "hb-overdue")
	ctx := testContext(t)
	p.fail(rule{match: "/heartbeat", n: 1 << 30, status: http.StatusBadGateway})
	opts, ch := beats(registry.HeartbeatOptions{})
	hb, err := c.Register(ctx, registry.Service{ID: "late-1", HeartbeatTimeout: 3}, registry.RegisterOptions{Heartbeat: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Stop()
	var b registry.Beat
	for b = nextBeat(t, ch); !b.Overdue; b = nextBeat(t, ch) {
		if b.Err == nil {
			t.Fatal("a heartbeat succeeded through the failing proxy")
		}
	}
	if b.Err == nil || b.Time.Before(b.Deadline) {
		t.Errorf("overdue beat %+v", b)
	}
	p.clear()
	for b = nextBeat(t, ch); b.Err != nil; b = nextBeat(t, ch) {
		if !b.Overdue {
			t.Fatalf("a failure after the deadline without Overdue: %+v", b)
		}
	}
	if !b.Overdue {
		t.Errorf("the late success is not marked Overdue: %+v", b)
	}
	// Back on schedule: a beat on time within the next three (a loaded
	// machine may hold one past the 3 s deadline).
	for i := 0; ; i++ {
		b := nextBeat(t, ch)
		if b.Err == nil && !b.Overdue {
			break
		}
		if i == 2 {
			t.Errorf("three beats after the late one, the last %+v; want one on time", b)
			break
		}
	}
}

func TestHeartbeaterStop(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv, "hb-stop")
	ctx := testContext(t)

	tests := []struct {
		name    string
		stop    func(hb *registry.Heartbeater, cancel context.CancelFunc)
		wantErr error
	}{
		{"Stop", func(hb *registry.Heartbeater, _ context.CancelFunc) { hb.Stop() }, nil},
		{"context", func(_ *registry.Heartbeater, cancel context.CancelFunc) { cancel() }, context.Canceled},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hctx, cancel := context.WithCancel(ctx)
			defer cancel()
			opts, ch := beats(registry.HeartbeatOptions{})
			id := "stop-" + string(rune('a'+i))
			hb, err := c.Register(hctx, registry.Service{ID: id, HeartbeatTimeout: 30}, registry.RegisterOptions{Heartbeat: opts})
			if err != nil {
				t.Fatal(err)
			}
			if b := nextBeat(t, ch); b.Err != nil || hb.ID() != id {
				t.Fatalf("first beat: %+v", b)
			}
			tt.stop(hb, cancel)
			<-hb.Done()
			if err := hb.Err(); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("Err = %v, want %v", err, tt.wantErr)
			}
			hb.Stop() // again: a no-op
			// The service is still there: stopping does not delete it.
			if _, err := c.GetService(ctx, id); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRegisterWaitsOutDeadInstance is the original's
// test_register_service_quick_death: an instance died without deleting
// its service; registering again succeeds once the registry has timed
// the old one out.
func TestRegisterWaitsOutDeadInstance(t *testing.T) {
	t.Parallel()
	// The old instance's deadline passes when the test moves the
	// registry's clock, after Register has found the id taken twice: not
	// before Register's first create, however slow the machine.
	clock := new(testserver.Clock)
	p, c := proxied(t, "register", testserver.Options{Clock: clock})
	ctx := testContext(t)
	if _, err := c.CreateService(ctx, registry.Service{ID: "quick-death", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	taken := 0
	onTaken := func(time.Time) {
		if taken++; taken == 2 {
			clock.Advance(121 * time.Second)
		}
	}
	opts, ch := beats(registry.HeartbeatOptions{})
	hb, err := c.Register(ctx, registry.Service{ID: "quick-death", HeartbeatTimeout: 10, Tags: []string{"srv2"}},
		registry.RegisterOptions{RetryDelay: 100 * time.Millisecond, Heartbeat: opts, OnTaken: onTaken})
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Stop()
	if b := nextBeat(t, ch); b.Err != nil {
		t.Fatalf("first heartbeat: %v", b.Err)
	}
	s, err := c.GetService(ctx, "quick-death")
	if err != nil || !slices.Equal(s.Tags, []string{"srv2"}) || s.HeartbeatTimeout != 10 {
		t.Errorf("GetService = %+v, %v; want the new instance", s, err)
	}
	if n := p.count("POST /v1.0/", 0) - p.count("/heartbeat", 0); n < 3 {
		t.Errorf("%d creates, want several", n)
	}
}

func TestRegisterFailures(t *testing.T) {
	t.Parallel()
	p, c := proxied(t, "register-fail", testserver.Options{})
	ctx := testContext(t)

	t.Run("other errors stop at once", func(t *testing.T) {
		_, err := c.Register(ctx, registry.Service{ID: "x", HeartbeatTimeout: 10}, registry.RegisterOptions{RetryDelay: 10 * time.Millisecond})
		var e *registry.Error
		if !errors.As(err, &e) || e.Type != registry.FaultBadRequest || !strings.Contains(err.Error(), "register x") {
			t.Errorf("Register with a bad id: %v", err)
		}
		if n := p.count("POST /v1.0/", 0); n != 1 {
			t.Errorf("%d creates, want 1", n)
		}
	})

	t.Run("live instance", func(t *testing.T) {
		// 5 s, with a heartbeat every half second rather than the spec's
		// 3 s: a loaded machine may hold a heartbeat for a second or two,
		// and a 2 s margin could let the registry time the service out.
		live, err := c.Register(ctx, registry.Service{ID: "alive-1", HeartbeatTimeout: 5},
			registry.RegisterOptions{Heartbeat: registry.HeartbeatOptions{Interval: 500 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		defer live.Stop()
		_, err = c.Register(ctx, registry.Service{ID: "alive-1", HeartbeatTimeout: 5}, registry.RegisterOptions{RetryDelay: 200 * time.Millisecond})
		if !errors.Is(err, registry.ErrServiceExists) {
			t.Errorf("Register while another instance heartbeats: %v, want ErrServiceExists", err)
		}
		select {
		case <-live.Done():
			t.Errorf("the live instance's heartbeater stopped: %v", live.Err())
		default:
		}
	})

	t.Run("context", func(t *testing.T) {
		if _, err := c.CreateService(ctx, registry.Service{ID: "held-1", HeartbeatTimeout: 120}); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := c.Register(rctx, registry.Service{ID: "held-1", HeartbeatTimeout: 10}, registry.RegisterOptions{RetryDelay: 50 * time.Millisecond})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Register until the context ends: %v", err)
		}
	})
}

// TestRegisterContextEndsWhileTaken: a create answered "exists" after
// Register's context ended (its CreateGrace let it finish) ends Register
// with the context's error, as the context ending between creates does;
// ErrServiceExists is for an old instance outliving its timeout.
func TestRegisterContextEndsWhileTaken(t *testing.T) {
	t.Parallel()
	var hold atomic.Bool
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/services") && hold.Load() {
				arrived <- struct{}{}
				<-release
			}
			h.ServeHTTP(w, r)
		})
	}
	srv := testserver.Start(t, testserver.Options{Wrap: wrap})
	c := newClient(t, srv, "register-ctx-taken")
	ctx := testContext(t)
	if _, err := c.CreateService(ctx, registry.Service{ID: "held-2", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var told []time.Time // OnTaken's, read once Register returned
	go func() {
		_, err := c.Register(rctx, registry.Service{ID: "held-2", HeartbeatTimeout: 10}, registry.RegisterOptions{
			CreateGrace: time.Minute,
			OnTaken:     func(until time.Time) { told = append(told, until) },
		})
		done <- err
	}()
	<-arrived
	cancel()
	close(release)
	if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, registry.ErrServiceExists) {
		t.Errorf("Register whose context ended while the id was taken: %v; want context.Canceled alone", err)
	}
	// The caller learns that the service is another's.
	if len(told) != 1 || !told[0].IsZero() {
		t.Errorf("OnTaken was told %v, want once the zero time", told)
	}
}

// TestRegisterCreateGrace: a create already sent when Register's context
// ends gets CreateGrace to be answered, and its answer is Register's; with
// no grace its outcome is unknown.
func TestRegisterCreateGrace(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/services") {
				arrived <- struct{}{}
				<-release
			}
			h.ServeHTTP(w, r)
		})
	}
	srv := testserver.Start(t, testserver.Options{Wrap: wrap})
	c := newClient(t, srv, "register-grace")
	register := func(id string, grace time.Duration) (*registry.Heartbeater, error) {
		ctx, cancel := context.WithCancel(testContext(t))
		defer cancel()
		type result struct {
			hb  *registry.Heartbeater
			err error
		}
		done := make(chan result, 1)
		go func() {
			hb, err := c.Register(ctx, registry.Service{ID: id, HeartbeatTimeout: 30}, registry.RegisterOptions{CreateGrace: grace})
			done <- result{hb, err}
		}()
		<-arrived
		cancel()
		if grace == 0 {
			r := <-done // given up with the context, before the answer
			release <- struct{}{}
			return r.hb, r.err
		}
		release <- struct{}{}
		r := <-done
		return r.hb, r.err
	}

	hb, err := register("graced", 30*time.Second)
	if err != nil {
		t.Fatalf("Register with a grace, answered after its context ended: %v", err)
	}
	select {
	case <-hb.Done():
	case <-time.After(10 * time.Second):
		t.Error("the heartbeater of a Register whose context ended runs on")
	}
	if _, err := c.GetService(testContext(t), "graced"); err != nil {
		t.Errorf("the service the late answer created: %v", err)
	}

	if _, err := register("abandoned", 0); !errors.Is(err, registry.ErrOutcomeUnknown) {
		t.Errorf("Register without a grace, cancelled under way: %v, want ErrOutcomeUnknown", err)
	}
}

// A heartbeat that the registry took but whose answer came too late (given
// up) moved the registry's deadline then; its retry, the same token sent
// again, gets the same next token and moves nothing. The heartbeater's
// deadline must count from the attempt given up, not from the retry: a
// later estimate let the wrapper delete, unchecked, a service at the id
// that another instance had registered once the registry timed this one
// out.
func TestHeartbeatDeadlineCountsFromAnAttemptGivenUp(t *testing.T) {
	t.Parallel()
	var armed, held atomic.Bool
	var acted atomic.Int64 // when the registry took the held heartbeat (Unix ns)
	srv := testserver.Start(t, testserver.Options{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !armed.Load() || !strings.HasSuffix(r.URL.Path, "/heartbeat") || held.Swap(true) {
				h.ServeHTTP(w, r)
				return
			}
			// The registry acts at once; its answer would come after
			// the attempt's time (a quarter of the timeout, 3 s).
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
			acted.Store(time.Now().UnixNano())
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		})
	}})
	c := newClient(t, srv, "hb-given-up")
	ctx := testContext(t)
	token, err := c.CreateService(ctx, registry.Service{ID: "hb-1", HeartbeatTimeout: 12})
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	opts, ch := beats(registry.HeartbeatOptions{Interval: 8 * time.Second})
	hb := c.StartHeartbeat(ctx, "hb-1", token, 12, opts)
	defer hb.Stop()
	b := nextBeat(t, ch)
	if !errors.Is(b.Err, context.DeadlineExceeded) && !errors.Is(b.Err, registry.ErrOutcomeUnknown) {
		t.Fatalf("first beat: %v, want one given up", b.Err)
	}
	if b = nextBeat(t, ch); b.Err != nil {
		t.Fatalf("the retry failed: %v", b.Err)
	}
	// The registry's deadline is when it took the first attempt, plus the
	// timeout: the retry repeated its token.
	registryDeadline := time.Unix(0, acted.Load()).Add(12 * time.Second)
	if b.Deadline.After(registryDeadline) {
		t.Errorf("after the retry the heartbeater's deadline is %v, %v after the registry's",
			b.Deadline.Format("15:04:05.000"), b.Deadline.Sub(registryDeadline).Round(time.Millisecond))
	}
	if hb.Deadline().After(registryDeadline) {
		t.Errorf("Deadline() = %v, after the registry's %v", hb.Deadline().Format("15:04:05.000"), registryDeadline.Format("15:04:05.000"))
	}
}

// A heartbeat whose request is lost without an answer (a keep-alive
// connection that died silently, a node that froze) is given up and sent
// again in time to keep the service, even after slow answers have made
// the heartbeater wait longer for each: an attempt is not waited for past
// the point where its retry can no longer reach the registry before the
// deadline. Before, after an answer that took 1.5 s of an 8 s timeout the
// next attempt was waited for 4 s, sent 4.8 s after the last (the spec's
// schedule), and given up only after the registry's deadline.
func TestHeartbeatLostAfterSlowAnswerRetriedBeforeDeadline(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := testserver.Start(t, testserver.Options{ReapInterval: 100 * time.Millisecond, Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/heartbeat") {
				h.ServeHTTP(w, r)
				return
			}
			switch n.Add(1) {
			case 1:
				// The registry acts at once; its answer comes 1.5 s later.
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
				select {
				case <-time.After(1500 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
				maps.Copy(w.Header(), rec.Header())
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes())
			case 2:
				// Lost: the registry never sees it, nothing answers.
				<-r.Context().Done()
			default:
				h.ServeHTTP(w, r)
			}
		})
	}})
	c := newClient(t, srv, "hb-lost-after-slow")
	ctx := testContext(t)
	opts, ch := beats(registry.HeartbeatOptions{})
	hb, err := c.Register(ctx, registry.Service{ID: "hb-1", HeartbeatTimeout: 8}, registry.RegisterOptions{Heartbeat: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Stop()
	var seen []string
	for ok := 0; ok < 3; {
		b := nextBeat(t, ch)
		seen = append(seen, fmt.Sprintf("%s %v overdue=%v", b.Time.Format("15:04:05.000"), b.Err, b.Overdue))
		switch {
		case errors.Is(b.Err, registry.ErrNotFound):
			t.Fatalf("the service timed out; beats:\n%s", strings.Join(seen, "\n"))
		case b.Err == nil:
			ok++
		}
	}
}
