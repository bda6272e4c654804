package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/registry"
)

// A registry, or whatever answers in its place, that sends an answer
// without end does not run the client out of memory: the client stops
// reading at its bound and says so.
func TestEndlessAnswer(t *testing.T) {
	t.Parallel()
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"`)
		chunk := strings.Repeat("A", 64<<10)
		for range 2 << 10 { // 128 MiB, twice the bound
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		io.WriteString(w, `"}`)
	}))
	defer endless.Close()
	c, err := registry.New(registry.Config{URL: endless.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.GetService(context.Background(), "a")
	if err == nil || !strings.Contains(err.Error(), "larger than the client takes") {
		t.Fatalf("an endless answer: %v, want it refused at the bound", err)
	}
}

// The client follows a redirect only to the host it was given: the token
// (a header Go keeps on redirects to other hosts) and credentials (a
// body a 307 sends again) go nowhere else.
func TestRedirectsStayOnTheHost(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		io.WriteString(w, `{"id":"a"}`)
	}))
	defer other.Close()
	var moved atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/services/away"), strings.Contains(r.URL.Path, "/configuration/away"):
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
		case strings.HasPrefix(r.URL.Path, "/relocated/") && strings.HasSuffix(r.URL.Path, "/services/moved"):
			if r.Header.Get("X-Auth-Token") == "t" {
				moved.Add(1)
			}
			io.WriteString(w, `{"id":"moved"}`)
		case strings.HasSuffix(r.URL.Path, "/services/moved"):
			http.Redirect(w, r, "/relocated"+r.URL.Path, http.StatusTemporaryRedirect)
		case strings.HasSuffix(r.URL.Path, "/services/choices"):
			w.WriteHeader(http.StatusMultipleChoices)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	for _, hc := range []*http.Client{nil, {}} { // the client's own, and one given to it
		c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1", HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetService(context.Background(), "away")
		if err == nil || !strings.Contains(err.Error(), "not following a redirect") || elsewhere.Load() != 0 {
			t.Errorf("a redirect to another host (given a client: %v): %v, %d requests reached it", hc != nil, err, elsewhere.Load())
		}
		// A change redirected elsewhere was not applied: a refusal, not
		// an outcome to find out by retrying.
		var re *registry.RedirectError
		if err := c.SetConfig(context.Background(), "away-k", "v"); !errors.As(err, &re) || errors.Is(err, registry.ErrOutcomeUnknown) || !strings.Contains(err.Error(), "not following a redirect") {
			t.Errorf("a change redirected to another host (given a client: %v): %v; want a refusal", hc != nil, err)
		}
		// A 3xx that redirects nowhere else is the registry's answer.
		var e *registry.Error
		if _, err := c.GetService(context.Background(), "choices"); !errors.As(err, &e) || e.StatusCode != http.StatusMultipleChoices {
			t.Errorf("a 300 on the same host (given a client: %v): %v; want it as an answer", hc != nil, err)
		}
		if s, err := c.GetService(context.Background(), "moved"); err != nil || s.ID != "moved" {
			t.Errorf("a redirect on the same host (given a client: %v): %+v, %v", hc != nil, s, err)
		}
		c.Close()
	}
	if moved.Load() != 2 {
		t.Errorf("redirects on the same host that arrived with the token: %d, want 2", moved.Load())
	}
}

// A redirect elsewhere whose Location is long is kept cut, as registry
// text in an error is (a 9 MiB one, logged by the wrapper after each
// failed heartbeat, made 45 MiB log lines); headers past 64 KiB are not
// read at all.
func TestLongRedirectKeptCut(t *testing.T) {
	t.Parallel()
	long := "http://elsewhere.example/" + strings.Repeat("\xff", 32<<10)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/services/long"):
			w.Header().Set("Location", long)
			w.WriteHeader(http.StatusTemporaryRedirect)
		case strings.HasSuffix(r.URL.Path, "/services/huge"):
			w.Header().Set("X-Pad", strings.Repeat("a", 128<<10))
			io.WriteString(w, `{"id":"huge"}`)
		}
	}))
	defer api.Close()
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var re *registry.RedirectError
	if _, err := c.GetService(context.Background(), "long"); !errors.As(err, &re) {
		t.Errorf("a redirect to another host: %v", err)
	} else if len(re.Location) > 600 || len(err.Error()) > 4096 {
		t.Errorf("a redirect to a 32 KiB Location: Location of %d bytes, error of %d", len(re.Location), len(err.Error()))
	}
	if _, err := c.GetService(context.Background(), "huge"); err == nil {
		t.Error("an answer with 128 KiB of headers was read")
	}
}

// A marker the registry gives longer than any id (a next_marker, an
// event id, an X-Registry-Marker) is refused, not sent back in the next request's URL: a 60 MiB
// one had made a 180 MiB error and a gigabyte of heap.
func TestLongMarkersRefused(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 4<<10)
	var requests atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/events") {
			fmt.Fprintf(w, `{"values":[{"id":%q,"type":"service.join","timestamp":1767225600000}],"metadata":{"count":1,"limit":100,"marker":null,"next_href":null}}`, long)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/configuration") {
			w.Header().Set("X-Registry-Marker", long) // a watcher sends it back
			io.WriteString(w, `{"values":[],"metadata":{"count":0,"limit":100,"marker":null,"next_marker":null,"next_href":null}}`)
			return
		}
		fmt.Fprintf(w, `{"values":[{"id":"svc-1","heartbeat_timeout":30}],"metadata":{"count":1,"limit":100,"marker":null,"next_marker":%q,"next_href":null}}`, long)
	}))
	defer api.Close()
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, err := range c.ListServices(context.Background(), registry.ServiceListOptions{}) {
		if err == nil {
			continue
		}
		if !strings.Contains(err.Error(), "a next_marker of 8192 bytes") || len(err.Error()) > 512 {
			t.Errorf("a long next_marker: %v", err)
		}
		break
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d requests; want 1, the long next_marker not followed", n)
	}
	if _, err := c.ListEventsPage(context.Background(), registry.EventListOptions{}); err == nil || !strings.Contains(err.Error(), "an event id of 8192 bytes") {
		t.Errorf("a long event id: %v", err)
	}
	if _, err := c.ListConfigPage(context.Background(), registry.ConfigListOptions{}); err == nil || !strings.Contains(err.Error(), "an X-Registry-Marker of 8192 bytes") {
		t.Errorf("a long X-Registry-Marker: %v", err)
	}
}

// A registry that sends more values than a page's limit, such as 63 MiB
// of {}, which decode to 22 million services, is refused at the first
// value past the limit: the client neither decodes nor reads the rest. A
// page of exactly the limit is a page.
func TestPageLargerThanItsLimit(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	done := make(chan struct{}, 1)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("limit") == "3" {
			io.WriteString(w, `{"values":[{"id":"a"},{"id":"b"},{"id":"c"}],"metadata":{"next_marker":null}}`)
			return
		}
		defer func() { done <- struct{}{} }()
		io.WriteString(w, `{"values":[`)
		chunk := strings.Repeat(`{},`, 64<<10)
		for range 63 << 20 / len(chunk) {
			n, err := io.WriteString(w, chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
		io.WriteString(w, `{}],"metadata":{"next_marker":null}}`)
	}))
	defer api.Close()
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if p, err := c.ListServicesPage(ctx, registry.ServiceListOptions{Limit: 3}); err != nil || len(p.Values) != 3 {
		t.Fatalf("a page of its limit: %d values, %v", len(p.Values), err)
	}
	for _, tt := range []struct {
		name  string
		limit int
		list  func(limit int) error
	}{
		{"services", 10, func(limit int) error {
			_, err := c.ListServicesPage(ctx, registry.ServiceListOptions{Limit: limit})
			return err
		}},
		{"configuration", 10, func(limit int) error {
			_, err := c.ListConfigPage(ctx, registry.ConfigListOptions{Limit: limit})
			return err
		}},
		{"events, without a limit (at most 1000)", 0, func(limit int) error {
			_, err := c.ListEventsPage(ctx, registry.EventListOptions{Limit: limit})
			return err
		}},
	} {
		written.Store(0)
		err := tt.list(tt.limit)
		want := tt.limit
		if want == 0 {
			want = 1000
		}
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("a page of more than the %d values asked for", want)) {
			t.Errorf("%s: a page of 22 million values: %v; want it refused past %d", tt.name, err, want)
		}
		<-done
		// What the connection's buffers took, not the 63 MiB.
		if n := written.Load(); n > 32<<20 {
			t.Errorf("%s: the client read %d MiB of the page; want it to stop past the limit", tt.name, n>>20)
		}
	}
}

// A registry that pages without end, with a new next_marker on every page,
// ends a list with an error once it passes Config.MaxListItems, rather
// than grow it until memory runs out; empty pages count too, so that they
// do not page for ever. Each list that follows pages: the three iterators
// and a ServicesCache's fetch.
func TestListWithoutEnd(t *testing.T) {
	t.Parallel()
	for _, perPage := range []int{10, 0} {
		t.Run(fmt.Sprintf("%d per page", perPage), func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := requests.Add(1)
				values := strings.TrimSuffix(strings.Repeat(`{"id":"x","type":"service.join","payload":{}},`, perPage), ",")
				next := fmt.Sprintf("%q", fmt.Sprint("m", n))
				if n > 1000 { // for ever, as far as the test goes
					next = "null"
				}
				fmt.Fprintf(w, `{"values":[%s],"metadata":{"next_marker":%s}}`, values, next)
			}))
			defer api.Close()
			const maxItems = 95
			c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1", MaxListItems: maxItems})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			lists := map[string]func() (int, error){
				"services": func() (int, error) {
					return count(c.ListServices(ctx, registry.ServiceListOptions{Limit: 10}))
				},
				"configuration": func() (int, error) {
					return count(c.ListConfig(ctx, registry.ConfigListOptions{Limit: 10}))
				},
				"events": func() (int, error) {
					return count(c.ListEvents(ctx, registry.EventListOptions{Limit: 10}))
				},
			}
			// A page that would take the list past the bound is refused whole.
			wantItems, wantRequests := maxItems/10*10, int64(maxItems/10+1)
			if perPage == 0 {
				wantItems, wantRequests = 0, maxItems+1
			}
			for name, list := range lists {
				requests.Store(0)
				n, err := list()
				if err == nil || !strings.Contains(err.Error(), "the list went past 95 values") || !strings.Contains(err.Error(), "pages without end") {
					t.Errorf("%s: %d values, then %v; want the list refused past %d", name, n, err, maxItems)
				}
				if n != wantItems || requests.Load() != wantRequests {
					t.Errorf("%s: %d values in %d requests; want %d in %d", name, n, requests.Load(), wantItems, wantRequests)
				}
			}
			requests.Store(0)
			cache := registry.NewServicesCache(c, registry.CacheOptions{})
			if got, err := cache.Get(ctx); err == nil || !strings.Contains(err.Error(), "pages without end") {
				t.Errorf("a cache's fetch: %d services, %v; want the list refused", len(got.Services), err)
			}
			if requests.Load() > wantRequests {
				t.Errorf("a cache's fetch: %d requests; want at most %d", requests.Load(), wantRequests)
			}
		})
	}
}

// A registry that pages without end with few but huge values (each page
// up to the 64 MiB an answer may be) is refused once the list's answers
// add up to 10 KiB for each value it may hold: its value count alone
// would let it send MaxListItems times 64 MiB.
func TestListOfHugeValues(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	huge := strings.Repeat("x", 300<<10)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		fmt.Fprintf(w, `{"values":[{"id":"v%d","value":"%s","type":"service.join","payload":{"id":"s"}}],"metadata":{"next_marker":"m%d"}}`, n, huge, n)
	}))
	defer api.Close()
	const maxItems = 100 // 1,000 KiB of answers
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1", MaxListItems: maxItems})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for name, list := range map[string]func() (int, error){
		"configuration": func() (int, error) { return count(c.ListConfig(ctx, registry.ConfigListOptions{Limit: 10})) },
		"events":        func() (int, error) { return count(c.ListEvents(ctx, registry.EventListOptions{Limit: 10})) },
		"services":      func() (int, error) { return count(c.ListServices(ctx, registry.ServiceListOptions{Limit: 10})) },
	} {
		requests.Store(0)
		n, err := list()
		if err == nil || !strings.Contains(err.Error(), "the list went past 1000 KiB") {
			t.Errorf("%s: %d values, then %v; want the list refused past 1,000 KiB", name, n, err)
		}
		// Three pages of 300 KiB fit; the fourth is refused.
		if n != 3 || requests.Load() != 4 {
			t.Errorf("%s: %d values in %d requests; want 3 in 4", name, n, requests.Load())
		}
	}
}

// A MaxListItems so large that its byte budget would pass the largest
// int64 (one meaning "no bound") is no bound on the bytes either.
func TestListWithTheLargestMaxListItems(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"values":[{"id":"cfg","value":"v"}],"metadata":{"next_marker":null}}`)
	}))
	defer api.Close()
	for _, maxItems := range []int{1e15, math.MaxInt} {
		c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1", MaxListItems: maxItems})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := count(c.ListConfig(context.Background(), registry.ConfigListOptions{})); n != 1 || err != nil {
			t.Errorf("MaxListItems %d: %d values, %v; want the one value", maxItems, n, err)
		}
		c.Close()
	}
}

// count counts a list's values up to its first error.
func count[T any](seq iter.Seq2[T, error]) (int, error) {
	n := 0
	for _, err := range seq {
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// A registry that answers the feed at once with nothing new is not polled
// in a tight loop, however it says so: empty pages that name a fresh next
// page, a long-poll answered at once with a wait it claims to have
// applied, or both in turn. A long-poll that waited its wait (the one
// asked for, or the registry's shorter cap) for nothing is followed by the
// next at once.
func TestFeedEmptyAnswers(t *testing.T) {
	// Empty pages that name a next one are followed at once up to 1000 in
	// a row, as catching up through a registry that filters by type after
	// it pages needs, then 10 a second at most.
	// (At least 50 here, which a feed that backed off from the first
	// could not reach: a loaded machine may not make 1000 in 3 s.)
	const catchUp = 1000
	t.Parallel()
	const empty = `{"values":[],"metadata":{"next_marker":null}}`
	tests := []struct {
		name     string
		wait     time.Duration // the feed's Wait
		answer   func(w http.ResponseWriter, r *http.Request, n int64)
		min, max int64 // polls in 3 seconds
	}{
		{"empty pages naming a next one", 30 * time.Second, func(w http.ResponseWriter, r *http.Request, n int64) {
			w.Header().Set("X-Registry-Wait", r.URL.Query().Get("wait"))
			fmt.Fprintf(w, `{"values":[],"metadata":{"next_marker":"m%d"}}`, n)
		}, 50, catchUp + 40},
		{"a wait of a nanosecond, claimed", 30 * time.Second, func(w http.ResponseWriter, r *http.Request, n int64) {
			w.Header().Set("X-Registry-Wait", "1ns")
			io.WriteString(w, empty)
		}, 1, 5},
		{"a long-poll answered at once naming a next page, which is empty", 30 * time.Second, func(w http.ResponseWriter, r *http.Request, n int64) {
			if r.URL.Query().Get("wait") == "" {
				io.WriteString(w, empty)
				return
			}
			w.Header().Set("X-Registry-Wait", r.URL.Query().Get("wait"))
			fmt.Fprintf(w, `{"values":[],"metadata":{"next_marker":"m%d"}}`, n)
		}, 50, catchUp + 40},
		{"long-polls that wait", 150 * time.Millisecond, func(w http.ResponseWriter, r *http.Request, n int64) {
			time.Sleep(150 * time.Millisecond)
			w.Header().Set("X-Registry-Wait", "150ms")
			io.WriteString(w, empty)
		}, 12, 21},
		{"long-polls that wait the registry's cap", 10 * time.Second, func(w http.ResponseWriter, r *http.Request, n int64) {
			time.Sleep(1100 * time.Millisecond)
			w.Header().Set("X-Registry-Wait", "1.1s")
			io.WriteString(w, empty)
		}, 2, 3}, // at 0, 1.1 and 2.2 s; the third may come late on a loaded machine
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var polls atomic.Int64
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tt.answer(w, r, polls.Add(1))
			}))
			defer api.Close()
			c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A long backoff, which shows as missing polls where the feed
			// must ask again at once.
			feed := c.NewFeed("", registry.WatchOptions{Wait: tt.wait, MinBackoff: time.Second, PollInterval: 5 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if ev, err := feed.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Next = %+v, %v; want nothing until the deadline", ev, err)
			}
			if n := polls.Load(); n < tt.min || n > tt.max {
				t.Errorf("%d polls in 3 seconds; want %d..%d", n, tt.min, tt.max)
			}
		})
	}
}

// A registry that filters by type after it pages (spec §13) answers a
// feed of one type with empty pages that name a next one; the feed reads
// them once, and starts its next polls after them rather than from the
// last event it returned, which would read the whole chain again at each
// poll.
func TestFeedAfterEmptyFilteredPages(t *testing.T) {
	t.Parallel()
	ids := make([]string, 251)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08x-0000-1000-8000-000000000000", i+1)
	}
	var polls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		q := r.URL.Query()
		from := slices.Index(ids, q.Get("marker"))
		if from < 0 {
			from = 0
		}
		end := min(from+100, len(ids))
		var values []string
		for i := from; i < end; i++ {
			typ := "configuration_value.update"
			if i == 0 {
				typ = "service.join"
			}
			if q.Get("type") == "" || q.Get("type") == typ {
				values = append(values, fmt.Sprintf(`{"id":%q,"type":%q,"payload":{"id":"x"}}`, ids[i], typ))
			}
		}
		next := "null"
		if end < len(ids) {
			next = strconv.Quote(ids[end])
		}
		fmt.Fprintf(w, `{"values":[%s],"metadata":{"next_marker":%s}}`, strings.Join(values, ","), next)
	}))
	defer api.Close()
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	feed := c.NewFeed(ids[0], registry.WatchOptions{Type: registry.ServiceJoin, PollInterval: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if ev, err := feed.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %+v, %v; want nothing new until the deadline", ev, err)
	}
	// Three pages of the chain, then one poll every 0.5 s from its last.
	if n := polls.Load(); n > 12 {
		t.Errorf("%d polls in 3 s; want the chain read once, then one page a poll", n)
	}
}

// Register waits for the instance that holds the id for at most the spec's
// longest timeout (and a margin), whatever timeout the registry says that
// instance has: a registry's answer alone cannot keep a wrapper from ever
// starting its command. A negative one (which would overflow to centuries)
// is no wait at all.
func TestRegisterWaitsNoLongerThanTheLongestTimeout(t *testing.T) {
	t.Parallel()
	for _, timeout := range []string{"100000000", "-9223372040", "-1"} {
		t.Run(timeout, func(t *testing.T) {
			t.Parallel()
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.Method == "POST":
					w.WriteHeader(http.StatusBadRequest)
					io.WriteString(w, `{"type":"serviceWithThisIdExists","code":400,"message":"Service with this id already exists","details":"","txnId":"x"}`)
				default:
					io.WriteString(w, `{"id":"held","tags":[],"metadata":{},"heartbeat_timeout":`+timeout+`,"last_seen":null}`)
				}
			}))
			defer api.Close()
			c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			taken := make(chan time.Time, 1)
			go c.Register(ctx, registry.Service{ID: "held", HeartbeatTimeout: 30}, registry.RegisterOptions{OnTaken: func(until time.Time) {
				select {
				case taken <- until:
				default:
				}
			}})
			select {
			case until := <-taken:
				if wait := time.Until(until); wait > (registry.MaxHeartbeatTimeout+10)*time.Second {
					t.Errorf("Register waits %v for the holder, past the longest timeout (%d s)", wait.Round(time.Second), registry.MaxHeartbeatTimeout)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Register did not find the id taken")
			}
		})
	}
}

// An event whose payload names no service or configuration value ({},
// null: a registry's or a proxy's mistake) does not decode: applied, it
// would put a service without an id in a watcher's snapshot.
func TestEventPayloadWithoutAnID(t *testing.T) {
	t.Parallel()
	for _, payload := range []string{`{}`, `null`, `{"id":""}`, `{"configuration_value_id":""}`} {
		for _, typ := range []registry.EventType{registry.ServiceJoin, registry.ServiceTimeout} {
			if s, err := (registry.Event{Type: typ, Payload: []byte(payload)}).Service(); err == nil {
				t.Errorf("%s %s decoded as %+v", typ, payload, s)
			}
		}
		if c, err := (registry.Event{Type: registry.ConfigValueUpdate, Payload: []byte(payload)}).ConfigChange(); err == nil {
			t.Errorf("%s %s decoded as %+v", registry.ConfigValueUpdate, payload, c)
		}
	}
	if s, err := (registry.Event{Type: registry.ServiceJoin, Payload: []byte(`{"id":"web-1"}`)}).Service(); err != nil || s.ID != "web-1" {
		t.Errorf("a payload with an id: %+v, %v", s, err)
	}
}

// A success that is not the registry's answer (an empty body, a proxy's
// page, another item, a token no registry makes) is an error, not an
// empty value or a change made: a deploy script must not go on as if it
// read the value or deleted the service. A token is bounded: a client
// keeps it and sends it back with every heartbeat.
func TestSuccessThatIsNotTheAnswer(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("a", 60<<10)
	var answer atomic.Value
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answer.Load().([2]string)
		if a[0] != "" {
			w.Header().Set("Content-Type", a[0])
		}
		io.WriteString(w, a[1])
	}))
	defer api.Close()
	c := tokenClient(t, api.URL)
	ctx := context.Background()
	page := [2]string{"text/html", "<html>down for maintenance</html>"}
	for _, tc := range []struct {
		name   string
		answer [2]string
		call   func() error
		want   string // in the error; "" for none
	}{
		{"get an empty body", [2]string{}, func() error { _, err := c.GetService(ctx, "web-1"); return err }, `without the service "web-1"`},
		{"get {}", [2]string{"application/json", "{}"}, func() error { _, err := c.GetService(ctx, "web-1"); return err }, `without the service "web-1"`},
		{"get another", [2]string{"application/json", `{"id":"web-2"}`}, func() error { _, err := c.GetService(ctx, "web-1"); return err }, `the answer is "web-2"`},
		{"get the service", [2]string{"application/json", `{"id":"web-1"}`}, func() error { _, err := c.GetService(ctx, "web-1"); return err }, ""},
		{"get a value, empty", [2]string{}, func() error { _, err := c.GetConfig(ctx, "/prod/ip"); return err }, `without the configuration value "/prod/ip"`},
		{"get a value", [2]string{"application/json", `{"id":"/prod/ip","value":""}`}, func() error { _, err := c.GetConfig(ctx, "/prod/ip"); return err }, ""},
		{"get a value by the docs' form", [2]string{"application/json", `{"id":"/prod/ip","value":""}`}, func() error { _, err := c.GetConfig(ctx, "prod/ip"); return err }, ""},
		{"get a value, another", [2]string{"application/json", `{"id":"/prod/ip2","value":""}`}, func() error { _, err := c.GetConfig(ctx, "prod/ip"); return err }, `the answer is "/prod/ip2"`},
		{"delete, a page", page, func() error { return c.DeleteService(ctx, "web-1") }, "not the registry's answer"},
		{"set, a page", page, func() error { return c.SetConfig(ctx, "/prod/ip", "x") }, "not the registry's answer"},
		{"delete, empty 200", [2]string{}, func() error { return c.DeleteConfig(ctx, "/prod/ip") }, ""},
		{"create, a huge token", [2]string{"application/json", `{"token":"` + huge + `"}`},
			func() error {
				_, err := c.CreateService(ctx, registry.Service{ID: "web-1", HeartbeatTimeout: 10})
				return err
			}, "without a heartbeat token"},
		{"heartbeat, a huge token", [2]string{"application/json", `{"token":"` + huge + `"}`},
			func() error { _, err := c.Heartbeat(ctx, "web-1", "tok"); return err }, "without a heartbeat token"},
		{"heartbeat, a huge answer", [2]string{"application/json", `{"token":"x","pad":"` + strings.Repeat("b", 1<<20) + `"}`},
			func() error { _, err := c.Heartbeat(ctx, "web-1", "tok"); return err }, "larger than the client takes"},
		{"heartbeat, a token with a space", [2]string{"application/json", `{"token":"a b"}`},
			func() error { _, err := c.Heartbeat(ctx, "web-1", "tok"); return err }, "without a heartbeat token"},
		{"heartbeat", [2]string{"application/json", `{"token":"a3c5e0d2-1f6b-11ee-8000-0242ac120002"}`},
			func() error { _, err := c.Heartbeat(ctx, "web-1", "tok"); return err }, ""},
	} {
		answer.Store(tc.answer)
		err := tc.call()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
		if strings.Contains(tc.name, "a page") && !errors.Is(err, registry.ErrOutcomeUnknown) {
			t.Errorf("%s: %v; want ErrOutcomeUnknown (the change may have been made)", tc.name, err)
		}
	}
}

// A registry that sends the same events again and again, whose ids are
// not time UUIDs (which the feed orders), has each returned once: the
// feed does not take them for new at each poll, nor poll in a loop
// without a wait.
func TestFeedSameEventsAgain(t *testing.T) {
	t.Parallel()
	var polls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		w.Header().Set("X-Registry-Wait", r.URL.Query().Get("wait"))
		io.WriteString(w, `{"values":[{"id":"a","type":"configuration_value.update","timestamp":1,"payload":{"id":"k","value":"1"}},`+
			`{"id":"b","type":"configuration_value.update","timestamp":2,"payload":{"id":"k","value":"2"}}],"metadata":{"next_marker":null}}`)
	}))
	defer api.Close()
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	feed := c.NewFeed("", registry.WatchOptions{Wait: 30 * time.Second, MinBackoff: time.Second, PollInterval: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var got []string
	for {
		ev, err := feed.Next(ctx)
		if err != nil {
			break
		}
		got = append(got, ev.ID)
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("%d events, the first %q; want a and b, once", len(got), got[:min(len(got), 6)])
	}
	if n := polls.Load(); n > 5 {
		t.Errorf("%d polls in 2 seconds; want a few", n)
	}
}

// Items a registry sends past any the API keeps are refused before they
// are decoded: each costs some 40 bytes of memory however short it is on
// the wire, so a page's bound alone would let a page of null tags, or an
// identity answer of empty catalog entries, take ten to forty times its
// size. Services of long values decode as before.
func TestAnswersOfManySmallItems(t *testing.T) {
	t.Parallel()
	many := func(open, item, close string, n int) string {
		return open + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + close
	}
	// The largest service the API keeps: 10 tags and 20 pairs of 250
	// characters, written escaped.
	long := strings.Repeat(`\"\u00e9`, 250)
	pairs := make([]string, 20)
	for i := range pairs {
		pairs[i] = fmt.Sprintf(`"k%02d":"%s"`, i, long)
	}
	legit := `{"id":"big","tags":` + many("[", `"`+long+`"`, "]", 10) + `,"metadata":{` + strings.Join(pairs, ",") + `},"heartbeat_timeout":30}`
	var identity, limits atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/v2.0/tokens"):
			io.WriteString(w, identity.Load().(string))
		case strings.HasSuffix(r.URL.Path, "/limits"):
			io.WriteString(w, limits.Load().(string))
		case strings.HasSuffix(r.URL.Path, "/services/nulls"):
			io.WriteString(w, `{"id":"nulls","tags":`+many("[", "null", "]", 1025)+`,"metadata":{},"heartbeat_timeout":30}`)
		case strings.HasSuffix(r.URL.Path, "/services/pairs"):
			io.WriteString(w, `{"id":"pairs","tags":[],"metadata":{"a":"b"`+strings.Repeat(`,"a":"b"`, 1024)+`},"heartbeat_timeout":30}`)
		case strings.HasSuffix(r.URL.Path, "/services/thirty"):
			io.WriteString(w, `{"id":"thirty","tags":`+many("[", `"t"`, "]", 30)+`,"metadata":{},"heartbeat_timeout":30}`)
		case strings.HasSuffix(r.URL.Path, "/services/big"):
			io.WriteString(w, legit)
		case strings.HasSuffix(r.URL.Path, "/services"):
			io.WriteString(w, `{"values":[{"id":"a","tags":[],"metadata":{},"heartbeat_timeout":30},`+
				`{"id":"b","tags":`+many("[", "null", "]", 200000)+`,"metadata":{},"heartbeat_timeout":30}],"metadata":{"next_marker":null}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := registry.New(registry.Config{URL: srv.URL + "/v1.0", Token: "t", Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, id := range []string{"nulls", "pairs"} {
		if _, err := c.GetService(ctx, id); err == nil || !strings.Contains(err.Error(), "more than 1024 tags and metadata pairs") {
			t.Errorf("GetService(%s): %v, want it refused for its items", id, err)
		}
	}
	if s, err := c.GetService(ctx, "thirty"); err != nil || len(s.Tags) != 30 {
		t.Errorf("GetService(thirty) = %d tags, %v; want 30 (past the API's 10, within the bound)", len(s.Tags), err)
	}
	if s, err := c.GetService(ctx, "big"); err != nil || len(s.Tags) != 10 || len(s.Metadata) != 20 || s.Metadata["k07"] != strings.Repeat(`"é`, 250) {
		t.Errorf("GetService(big) = %d tags, %d pairs, %v; want the largest service the API keeps", len(s.Tags), len(s.Metadata), err)
	}
	var listed []string
	for s, err := range c.ListServices(ctx, registry.ServiceListOptions{}) {
		if err != nil {
			if !strings.Contains(err.Error(), "more than 1024 tags and metadata pairs") {
				t.Errorf("listing: %v, want the service of 200000 tags refused", err)
			}
			break
		}
		listed = append(listed, s.ID)
	}
	if len(listed) > 1 {
		t.Errorf("listed %v: the service of 200000 null tags was taken", listed)
	}

	// The identity's answer and the limits are one item's answers: 1 MiB.
	identity.Store(`{"access":{"token":{"id":"tok","tenant":{"id":"1"}},"serviceCatalog":` + many("[", "{}", "]", 1<<20) + `}}`)
	limits.Store(`{"resource":{` + many("", `"s":1`, "", 1<<19) + `},"rate":{}}`)
	ic, err := registry.New(registry.Config{URL: srv.URL + "/v1.0", Username: "u", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if _, err := ic.Authenticate(ctx); err == nil || !strings.Contains(err.Error(), "larger than the client takes") {
		t.Errorf("an identity answer of 3 MiB: %v, want it refused at 1 MiB", err)
	}
	if _, err := c.Limits(ctx); err == nil || !strings.Contains(err.Error(), "larger than the client takes") {
		t.Errorf("limits of 3 MiB: %v, want them refused at 1 MiB", err)
	}
	identity.Store(`{"access":{"token":{"id":"tok","tenant":{"id":"1"}},"serviceCatalog":` + many("[", `{"name":"cloudServers","endpoints":[{"tenantId":"1"}]}`, "]", 100) + `}}`)
	if tok, err := ic.Authenticate(ctx); err != nil || tok.ID != "tok" {
		t.Errorf("an identity answer with a catalog of 100 entries: %v, %v", tok, err)
	}
}

// A registry URL with a query string (a token copied with it, such as
// ?x-auth-token=, which the server takes) is refused, without quoting the
// query: paths are appended to the base, so the query ended up in the
// middle of each request's URL, and every error that quoted one showed
// the token (the renderer's log, /healthz, its status page).
func TestRegistryURLWithAQueryRefused(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"http://127.0.0.1:9/v1.0?x-auth-token=TOKSECRET123",
		"http://127.0.0.1:9/v1.0/?x-auth-token=TOKSECRET123&k=v",
		"http://127.0.0.1:9/v1.0#TOKSECRET123",
		"http://127.0.0.1:9/v1.0?",
		"http://127.0.0.1:8/v1.0,http://127.0.0.1:9/v1.0?x-auth-token=TOKSECRET123",
	} {
		_, err := registry.New(registry.Config{URL: u, Token: strings.Repeat("t", 24), Tenant: "1"})
		if err == nil || !strings.Contains(err.Error(), "has a query string or fragment") || strings.Contains(err.Error(), "TOKSECRET123") {
			t.Errorf("URL %s: %v; want it refused, the query not quoted", u, err)
		}
	}
	// The identity endpoint's too.
	_, err := registry.New(registry.Config{URL: "http://127.0.0.1:9/v1.0", AuthURL: "http://127.0.0.1:9/v2.0?x-auth-token=TOKSECRET123", Username: "u", APIKey: "k"})
	if err == nil || !strings.Contains(err.Error(), "AuthURL http://127.0.0.1:9/v2.0 has a query string or fragment") || strings.Contains(err.Error(), "TOKSECRET123") {
		t.Errorf("AuthURL with a query: %v; want it refused, the query not quoted", err)
	}
}

// A create answered that the id is taken calls OnConflict at once; when
// the service that held it is gone by the time Register reads it, Register
// creates again, and OnTaken, which says an old instance holds the id, is
// not called.
func TestRegisterConflictWithAGoneHolder(t *testing.T) {
	t.Parallel()
	var creates atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/services") && creates.Add(1) == 1:
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"type":"serviceWithThisIdExists","code":409,"message":"Service with this id already exists","details":"","txnId":"x"}`)
		case r.Method == "POST":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"token":"tok"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"type":"notFoundError","code":404,"message":"object does not exist","details":"","txnId":"x"}`)
		}
	}))
	defer api.Close()
	c, err := registry.New(registry.Config{URL: api.URL + "/v1.0", Token: strings.Repeat("t", 24), Tenant: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conflicts, taken atomic.Int32
	hb, err := c.Register(ctx, registry.Service{ID: "gone", HeartbeatTimeout: 30}, registry.RegisterOptions{
		OnConflict: func() { conflicts.Add(1) },
		OnTaken:    func(time.Time) { taken.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	hb.Stop()
	if conflicts.Load() != 1 || taken.Load() != 0 || creates.Load() != 2 {
		t.Errorf("%d conflicts, %d taken, %d creates; want 1, 0 and 2", conflicts.Load(), taken.Load(), creates.Load())
	}
}

// A read of one item answered with another whose id is long (up to the
// item answer's megabyte) or holds what a terminal acts on gets an error
// that shows the id cut and escaped, as the client's errors show the
// registry's text: one line of bounded length.
func TestAnotherItemsIDShownCut(t *testing.T) {
	t.Parallel()
	var id atomic.Value
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"id": id.Load().(string), "value": "v"})
	}))
	defer api.Close()
	c := tokenClient(t, api.URL)
	ctx := testContext(t)
	for _, got := range []string{strings.Repeat("a", 900<<10), "web-2\x1b[2J\u202e\nfake line"} {
		id.Store(got)
		for name, call := range map[string]func() error{
			"GetService": func() error { _, err := c.GetService(ctx, "web-1"); return err },
			"GetConfig":  func() error { _, err := c.GetConfig(ctx, "/prod/ip"); return err },
		} {
			err := call()
			if err == nil {
				t.Fatalf("%s: no error for an answer with the id %.20q", name, got)
			}
			msg := err.Error()
			if len(msg) > 1024 || !printable.AllShown(msg, printable.ShowsInline) {
				t.Errorf("%s: an error of %d bytes, not one line of shown text: %.200q", name, len(msg), msg)
			}
		}
	}
}

// A redirect on the registry's host to a URL whose query holds what a
// terminal acts on (a bidi override, the C1 control CSI), which Go's URL
// keeps as it came, does not put it in the error of the answer there: the
// error shows the URL with those bytes percent-encoded.
func TestRedirectedQueryShownEscaped(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1.0/1/services/web-1" {
			w.Header().Set("Location", "/v1.0/1/gone?x=\u202e\u009b2J")
			w.WriteHeader(http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer api.Close()
	c := tokenClient(t, api.URL)
	_, err := c.GetService(testContext(t), "web-1")
	if err == nil {
		t.Fatal("no error")
	}
	if msg := err.Error(); !printable.AllShown(msg, printable.ShowsInline) || !strings.Contains(msg, "/gone?x=%E2%80%AE%C2%9B2J") {
		t.Errorf("error %q: want the query percent-encoded", msg)
	}
}

// An answer that does not decode gets an error of bounded length:
// encoding/json quotes a number it cannot store whole, and a registry's
// number of megabytes of digits was an error, and a log line, of
// megabytes. So was an event's type, which Service quoted as it came.
func TestUndecodableNumberShownCut(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("9", 900<<10)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1.0/1/services":
			fmt.Fprintf(w, `{"values":[{"id":"web-1","heartbeat_timeout":%s}],"metadata":{}}`, huge)
		case "/v1.0/1/events":
			fmt.Fprintf(w, `{"values":[{"id":"e","type":"service.join","timestamp":1,"payload":{"id":"web-1","heartbeat_timeout":%s}}],"metadata":{}}`, huge)
		default:
			fmt.Fprintf(w, `{"id":"web-1","tags":[],"metadata":{},"heartbeat_timeout":%s}`, huge)
		}
	}))
	defer api.Close()
	c := tokenClient(t, api.URL)
	ctx := testContext(t)
	for name, call := range map[string]func() error{
		"GetService": func() error { _, err := c.GetService(ctx, "web-1"); return err },
		"ListServices": func() error {
			for _, err := range c.ListServices(ctx, registry.ServiceListOptions{}) {
				if err != nil {
					return err
				}
			}
			return nil
		},
		"Event.Service": func() error {
			p, err := c.ListEventsPage(ctx, registry.EventListOptions{})
			if err != nil || len(p.Values) != 1 {
				return fmt.Errorf("events: %v (%d)", err, len(p.Values))
			}
			_, err = p.Values[0].Service()
			return err
		},
		"Event.Service of another type": func() error {
			_, err := registry.Event{ID: "e", Type: registry.EventType(strings.Repeat("x", 900<<10) + "\x1b[2J\n")}.Service()
			return err
		},
	} {
		err := call()
		if err == nil {
			t.Errorf("%s: no error for a number of %d digits", name, len(huge))
			continue
		}
		if msg := err.Error(); len(msg) > 2048 || !printable.AllShown(msg, printable.ShowsInline) {
			t.Errorf("%s: an error of %d bytes, not one line of shown text: %.200q", name, len(msg), msg)
		}
	}
}

// A success with a body where a change answers 204 gets an error that
// shows the answer's Content-Type cut, as the client's errors show the
// registry's text: the header may be as long as the header limit (Go's
// 10 MiB with an HTTPClient of the caller's own).
func TestNotTheAnswersContentTypeShownCut(t *testing.T) {
	t.Parallel()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; x="+strings.Repeat("a", 1<<20))
		io.WriteString(w, "<html>down for maintenance</html>")
	}))
	defer api.Close()
	c, err := registry.New(registry.Config{URL: api.URL, Token: "t", Tenant: "1", HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.DeleteService(testContext(t), "web-1")
	if err == nil || !strings.Contains(err.Error(), "not the registry's answer") {
		t.Fatalf("%.200v; want an error saying it is not the registry's answer", err)
	}
	if msg := err.Error(); len(msg) > 2048 {
		t.Errorf("an error of %d bytes: %.200q", len(msg), msg)
	}
}
