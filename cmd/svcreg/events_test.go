package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// output is an io.Writer that tests can wait on while a command writes to
// it.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	close(o.changed)
	o.changed = make(chan struct{})
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output holds s.
func (o *output) waitFor(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		o.mu.Lock()
		has, changed := strings.Contains(o.buf.String(), s), o.changed
		o.mu.Unlock()
		if has {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("no %q in the output after 20s; output:\n%s", s, o.String())
		}
	}
}

// tailEnv starts a registry and returns a client for user and the
// environment that points svcreg at the same account.
func tailEnv(t *testing.T, user string) (*testserver.Server, *registry.Client) {
	t.Helper()
	srv := testserver.Start(t, testserver.Options{})
	c, err := registry.New(registry.Config{URL: srv.APIURL, AuthURL: srv.AuthURL, Username: user, APIKey: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func create(t *testing.T, c *registry.Client, id string) {
	t.Helper()
	if _, err := c.CreateService(context.Background(), registry.Service{ID: id, HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
}

// runAsync runs the svcreg command line in-process and returns its exit
// status on a channel.
func runAsync(ctx context.Context, args []string, stdout, stderr *output) <-chan int {
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, strings.NewReader(""), stdout, stderr) }()
	return done
}

// Without --marker, tail starts now: events from before it started are
// not shown, events after it are, and it rides out a registry restart.
func TestEventsTailFromNow(t *testing.T) {
	t.Parallel()
	srv, c := tailEnv(t, "tail-now")
	create(t, c, "before-1")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stdout, stderr := newOutput(), newOutput()
	done := runAsync(ctx, []string{"events", "tail", "--count", "2",
		"--url", srv.APIURL, "--username", "tail-now", "--api-key", "dev"}, stdout, stderr)
	stderr.waitFor(t, "following the events after")

	create(t, c, "after-1")
	stdout.waitFor(t, "after-1")
	srv.Restart()
	c.Close() // its idle connection is to the stopped server
	create(t, c, "after-2")

	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
		}
	case <-ctx.Done():
		t.Fatalf("tail --count 2 did not exit; stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	out := stdout.String()
	if strings.Contains(out, "before-1") {
		t.Errorf("tail from now shows an event from before it started:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") ||
		!strings.Contains(lines[1], "service.join") || !strings.Contains(lines[1], "after-1") ||
		!strings.Contains(lines[2], "service.join") || !strings.Contains(lines[2], "after-2") {
		t.Errorf("tail output is not a header and the two joins:\n%s", out)
	}
}

// A tail from now started while the registry is down (503, as a node
// without its store answers), fails (500 internalError, as the original
// answered its proxy's errors) or rate-limits the account (svcreg's
// rateLimitReached, a 400) waits for it, saying so, as a tail with
// --marker does, then follows the events.
func TestEventsTailFromNowWaitsForTheRegistry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
	}{
		{"down", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
		}},
		{"internal error", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"type":"internalError","code":500,"message":"Internal Error","details":"Internal Error","txnId":"t"}`)
		}},
		{"rate limited", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"type":"rateLimitReached","code":400,"message":"Rate limit reached","details":"x","txnId":"t"}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			user := "tail-wait-" + strings.ReplaceAll(tc.name, " ", "-")
			srv, c := tailEnv(t, user)
			target, _ := url.Parse(srv.URL)
			rp := httputil.NewSingleHostReverseProxy(target)
			var down atomic.Bool
			down.Store(true)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if down.Load() && strings.HasPrefix(r.URL.Path, "/v1.0/") {
					tc.answer(w, r)
					return
				}
				rp.ServeHTTP(w, r)
			}))
			defer front.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stdout, stderr := newOutput(), newOutput()
			done := runAsync(ctx, []string{"events", "tail", "--count", "1",
				"--url", front.URL + "/v1.0", "--username", user, "--api-key", "dev"}, stdout, stderr)
			stderr.waitFor(t, "retrying in")
			down.Store(false)
			stderr.waitFor(t, "following the events after")
			create(t, c, "after-1")
			select {
			case code := <-done:
				if code != 0 || !strings.Contains(stdout.String(), "after-1") {
					t.Fatalf("exit status %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
				}
			case <-ctx.Done():
				t.Fatalf("tail --count 1 did not exit; stdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
		})
	}
}

// A tail from now against a registry that takes the connection and does
// not answer says, after a few seconds, what it waits for: before, it
// printed nothing for half a minute.
func TestEventsTailSaysWhatItWaitsFor(t *testing.T) {
	t.Parallel()
	silent := silentListener(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := newOutput(), newOutput()
	done := runAsync(ctx, []string{"events", "tail", "--url", "http://" + silent + "/v1.0", "--token", strings.Repeat("t", 24), "--tenant", "1"}, stdout, stderr)
	stderr.waitFor(t, "no answer from the registry yet (the login, or the list that finds where the feed is now); still waiting")
	cancel()
	<-done
}

// A tail that the registry refuses (credentials it does not take), or
// that does not reach the API (a --url that answers something else), ends
// with exit status 1 and what went wrong, from now or from a marker:
// retrying would not fix it.
func TestEventsTailStopsOnARefusal(t *testing.T) {
	t.Parallel()
	srv, _ := tailEnv(t, "tail-refused")
	page := impostor(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello</html>") })
	t.Cleanup(page.Close)
	gone := impostor(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusGone)
		io.WriteString(w, `{"type":"markerExpired","code":410,"message":"Marker has expired","details":"Events after this marker were removed by retention."}`)
	})
	t.Cleanup(gone.Close)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"refused", []string{"--url", srv.APIURL, "--username", "tail-refused", "--password", "wrong"}, "unauthorized"},
		{"refused, from a marker", []string{"--url", srv.APIURL, "--username", "tail-refused", "--password", "wrong", "--marker", "0c6e9f00-0000-1000-8000-000000000001"}, "unauthorized"},
		{"not the API", []string{"--url", page.URL, "--username", "x", "--api-key", "k"}, "decode answer"},
		{"an expired marker", []string{"--url", gone.URL, "--username", "x", "--api-key", "k", "--marker", "0c6e9f00-0000-1000-8000-000000000001"}, "is older than the events the registry keeps: give a newer one, or none to follow from now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stdout, stderr := newOutput(), newOutput()
			select {
			case code := <-runAsync(ctx, append([]string{"events", "tail"}, tc.args...), stdout, stderr):
				if code != 1 || !strings.Contains(stderr.String(), tc.want) {
					t.Errorf("exit status %d, stderr:\n%s\nwant 1 and %q", code, stderr, tc.want)
				}
			case <-ctx.Done():
				t.Errorf("the tail still runs; stderr:\n%s", stderr)
			}
		})
	}
}

// An interrupted tail (Ctrl-C, SIGINT) stops cleanly with exit status 0,
// after printing what it saw: here, run as a real process.
func TestEventsTailInterrupt(t *testing.T) {
	t.Parallel()
	srv, c := tailEnv(t, "tail-sigint")
	stdout := newOutput()
	cmd, stderr := startTail(t, srv, "tail-sigint", stdout)
	create(t, c, "sigint-1")
	if err := c.SetConfig(context.Background(), "/app/color", "blue"); err != nil {
		t.Fatal(err)
	}
	stdout.waitFor(t, `"configuration_value_id":"/app/color"`)

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := waitTail(cmd); err != nil {
		t.Fatalf("tail after SIGINT: %v; stderr:\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"type":"service.join"`) || !strings.Contains(lines[1], `"type":"configuration_value.update"`) {
		t.Errorf("tail -o json printed:\n%s\nwant the join, then the configuration update, one JSON object a line", stdout)
	}
}

// startTail runs "svcreg events tail -o json" as a real process for user
// at srv, its output to stdout, and returns once it follows the feed.
func startTail(t *testing.T, srv *testserver.Server, user string, stdout io.Writer) (*exec.Cmd, *output) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "events", "tail", "-o", "json")
	cmd.Env = append(os.Environ(), execEnv+"=1",
		"SVCREG_URL="+srv.APIURL, "SVCREG_USERNAME="+user, "SVCREG_API_KEY=dev",
		"SVCREG_TOKEN=", "SVCREG_TENANT=", "SVCREG_AUTH_URL=", "SVCREG_PASSWORD=", "SVCREG_REGION=")
	stderr := newOutput()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	stderr.waitFor(t, "following the events after")
	return cmd, stderr
}

// waitTail waits for a tail started by startTail to end, killing it if it
// has not within 20 s.
func waitTail(cmd *exec.Cmd) error {
	stuck := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer stuck.Stop()
	return cmd.Wait()
}

// A tail whose reader has gone ("svcreg events tail | head -1") ends then,
// with exit status 0, not at the next event, which may be long in coming.
// Here a real process, with no event after the one read.
func TestEventsTailEndsWhenItsReaderHasGone(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the reader's end is watched on Linux only")
	}
	srv, c := tailEnv(t, "tail-head")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd, stderr := startTail(t, srv, "tail-head", w)
	w.Close()
	create(t, c, "head-1")
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || !strings.Contains(line, `"type":"service.join"`) {
		t.Fatalf("first line %q, %v; want the join", line, err)
	}
	r.Close()
	if err := waitTail(cmd); err != nil {
		t.Fatalf("tail after its reader went: %v; want exit status 0 with no event to write; stderr:\n%s", err, stderr)
	}
}

// events list lines its columns up whatever the length of a key: the
// DETAIL column starts at the same place on every line.
func TestEventTableAligns(t *testing.T) {
	t.Parallel()
	long := "/production/" + strings.Repeat("k", 120)
	var events []registry.Event
	for i, key := range []string{"/a/short", long, "/b/mid-length-key"} {
		payload := `{"configuration_value_id":"` + key + `","old_value":null,"new_value":"value-` + string(rune('a'+i)) + `"}`
		events = append(events, registry.Event{ID: "e22ccb7e-eca0-11f1-bf09-9ff97e8996dd", Timestamp: time.UnixMilli(1796031115870),
			Type: registry.ConfigValueUpdate, Payload: []byte(payload)})
	}
	var b bytes.Buffer
	if err := writeEventTable(&b, events); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	col := strings.Index(lines[0], "DETAIL")
	for _, l := range lines[1:] {
		if i := strings.Index(l, `"value-`); i != col {
			t.Errorf("DETAIL at column %d, the header's at %d:\n%s", i, col, b.String())
		}
	}
}

// Registry text never reaches the terminal raw: events list and tail
// quote tags and metadata holding escape sequences, C1 controls or bidi
// overrides.
func TestEventsQuoteHostileMetadata(t *testing.T) {
	t.Parallel()
	srv, c := tailEnv(t, "events-hostile")
	hostile := map[string]string{"esc": "\x1b]0;owned\x07\x1b[2J", "c1": "a\u009b31mb", "bidi": "x\u202ey"}
	if _, err := c.CreateService(context.Background(), registry.Service{ID: "hostile-1", HeartbeatTimeout: 120, Metadata: hostile}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"events", "list",
		"--url", srv.APIURL, "--username", "events-hostile", "--api-key", "dev"}, strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("events list: exit status %d; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "hostile-1") {
		t.Fatalf("events list does not show the service:\n%s", out)
	}
	for _, bad := range []string{"\x1b", "\u009b", "\u202e", "\a"} {
		if strings.Contains(out, bad) {
			t.Errorf("events list prints %q raw:\n%q", bad, out)
		}
	}
	if !strings.Contains(out, `\x1b]0;owned`) {
		t.Errorf("events list does not show the escaped metadata:\n%q", out)
	}
	// A configuration value's change too, with marks that show as
	// nothing ("prod\ufe00" would read as "prod").
	var b bytes.Buffer
	if err := writeEventTable(&b, []registry.Event{{ID: "e22ccb7e-eca0-11f1-bf09-9ff97e8996dd", Timestamp: time.UnixMilli(1796031115870),
		Type: registry.ConfigValueUpdate, Payload: []byte(`{"configuration_value_id":"/env","old_value":"ok\u034f","new_value":"prod\ufe00"}`)}}); err != nil {
		t.Fatal(err)
	}
	if want := `"prod\ufe00" (was "ok\u034f")`; !strings.Contains(b.String(), want) {
		t.Errorf("a configuration change shows as\n%s\nwant %s in it", b.String(), want)
	}
}

// --output json escapes what a terminal would act on (a C1 control, a
// bidi override) as \uXXXX, and writes a registry's bytes that are not
// UTF-8 as \ufffd: valid JSON that decodes to the same values.
func TestJSONOutputEscapesHostileText(t *testing.T) {
	t.Parallel()
	srv, c := tailEnv(t, "json-hostile")
	ctx := context.Background()
	md := map[string]string{"bidi\u202e": "a\u009b31mb"}
	if _, err := c.CreateService(ctx, registry.Service{ID: "hostile-1", HeartbeatTimeout: 120, Metadata: md}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(ctx, "hostile.key", "x\u202ey\u009b2J"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"services", "get", "hostile-1"}, {"services", "list"}, {"config", "list"}, {"config", "get", "hostile.key"}, {"events", "list"}} {
		var stdout, stderr bytes.Buffer
		code := Main(ctx, append(args, "-o", "json", "--url", srv.APIURL, "--username", "json-hostile", "--api-key", "dev"), strings.NewReader(""), &stdout, &stderr)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", args, code, stderr.String())
		}
		for _, bad := range []string{"\u202e", "\u009b"} {
			if strings.Contains(stdout.String(), bad) {
				t.Errorf("%s -o json prints %q raw:\n%q", args, bad, stdout.String())
			}
		}
		if args[0] == "services" && args[1] == "get" {
			var got registry.Service
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || !maps.Equal(got.Metadata, md) {
				t.Errorf("services get -o json decodes to %v (%v), want the metadata %q", got.Metadata, err, md)
			}
		}
	}

	// A registry's event payload with a byte that is not UTF-8.
	raw := impostor(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1.0/123/events":
			io.WriteString(w, `{"values":[{"id":"0c6e9f00-0000-1000-8000-000000000001","timestamp":1,"type":"x.y","payload":{"k":"a`+"\x9b"+`2Jb"}}],"metadata":{"next_marker":null}}`)
		default:
			http.NotFound(w, r)
		}
	})
	defer raw.Close()
	var stdout, stderr bytes.Buffer
	if code := Main(ctx, []string{"events", "list", "-o", "json", "--url", raw.URL, "--username", "x", "--api-key", "k"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("events list: exit %d: %s", code, stderr.String())
	}
	if !utf8.Valid(stdout.Bytes()) || !json.Valid(stdout.Bytes()) || !strings.Contains(stdout.String(), `a\ufffd2Jb`) {
		t.Errorf("events list -o json of a payload that is not UTF-8:\n%q\nwant valid JSON, the byte as \\ufffd", stdout.String())
	}
}

// printable.JSON (writeJSON) of Go's JSON of any text is valid JSON that decodes to the same
// value: random strings of what it escapes (C1 controls, bidi overrides,
// runes past U+FFFF) and what it must leave (backslashes, quotes), and raw
// event payloads with bytes that are not UTF-8.
func TestJSONSafeRoundTrip(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	pick := []rune{'\\', '"', '\n', '\t', 0, 0x7f, 0x85, 0x9b, 0xa0, 0x202e, 0x2028, 0xfffd, 0xfeff, 0xe0001, 0x1f600, 'a', 'é', '<', 0x10ffff, 0x34f, 0xfe00, 0xfe0f, 0x3164}
	for range 5000 {
		var sb strings.Builder
		for range r.IntN(8) {
			if r.IntN(3) == 0 {
				sb.WriteRune(rune(r.IntN(0x110000)))
			} else {
				sb.WriteRune(pick[r.IntN(len(pick))])
			}
		}
		str := sb.String()
		quoted, _ := json.Marshal(str)
		v := map[string]any{str: []any{str, json.RawMessage(quoted)}}
		var buf bytes.Buffer
		if err := writeJSON(&buf, v); err != nil {
			t.Fatal(err)
		}
		var got, want any
		plain, _ := json.Marshal(v)
		json.Unmarshal(plain, &want)
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %q decodes to %#v (%v), want %#v", str, buf.Bytes(), got, err, want)
		}
	}
	// Marks that show as nothing, and blanks, are escaped too.
	var buf bytes.Buffer
	if err := writeJSON(&buf, []string{"prod\u034f", "prod\ufe00", "\u3164", "\u2764\ufe0f"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"prod\u034f"`, `"prod\ufe00"`, `"\u3164"`, "\"\u2764\ufe0f\""} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("writeJSON wrote %s, want %s in it", buf.String(), want)
		}
	}
	for _, in := range []string{"\"a\xffb\"", "\"\xed\xa0\x80\"", "\"\xe2\x80\"", "\"\\\\\xc2\x85\""} {
		var buf bytes.Buffer
		if err := writeJSON(&buf, json.RawMessage(in)); err != nil {
			t.Fatal(err)
		}
		var got, want string
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil || !utf8.Valid(buf.Bytes()) {
			t.Fatalf("%q -> %q: %v", in, buf.Bytes(), err)
		}
		json.Unmarshal([]byte(in), &want)
		if got != want {
			t.Errorf("%q: decodes to %q, want %q", in, got, want)
		}
	}
}

// events tail's first line names the marker it starts from, which the
// registry gave (here, a registry that sends no X-Registry-Marker, its
// newest event's id): escaped.
func TestTailStartLineQuotesTheRegistrysMarker(t *testing.T) {
	t.Parallel()
	srv := impostor(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1.0/123/services": // no X-Registry-Marker: the newest event's id
			io.WriteString(w, `{"values":[],"metadata":{"next_marker":null}}`)
		case "/v1.0/123/events":
			if r.URL.Query().Get("marker") == "" {
				io.WriteString(w, `{"values":[{"id":"\u001b]0;owned\u0007\u001b[2J","timestamp":1,"type":"x.y","payload":{}}],"metadata":{"next_marker":null}}`)
				return
			}
			http.Error(w, `{"type":"badRequest","code":400,"message":"no"}`, 400)
		default:
			http.NotFound(w, r)
		}
	})
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	Main(context.Background(), []string{"events", "tail", "--url", srv.URL, "--username", "x", "--api-key", "k"}, strings.NewReader(""), &stdout, &stderr)
	if !strings.Contains(stderr.String(), "following the events after") || strings.ContainsAny(stderr.String(), "\x1b\a") {
		t.Errorf("events tail's first line:\n%q\nwant the registry's marker escaped", stderr.String())
	}
}

// So do services get and list, and configuration list, in metadata keys
// and values, tags and configuration values.
func TestTablesQuoteHostileRegistryText(t *testing.T) {
	t.Parallel()
	srv, c := tailEnv(t, "tables-hostile")
	ctx := context.Background()
	meta := map[string]string{"k\x1b]0;owned\x07\x1b[2J": "v", "c1": "a\u009b31mb", "bidi\u202e": "x\u202ey"}
	if _, err := c.CreateService(ctx, registry.Service{ID: "hostile-1", HeartbeatTimeout: 120, Tags: []string{"t\u202eag"}, Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(ctx, "hostile.key", "\x1b[2Jvalue"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"services", "get", "hostile-1"}, {"services", "list"}, {"config", "list"}} {
		var stdout, stderr bytes.Buffer
		code := Main(ctx, append(args, "--url", srv.APIURL, "--username", "tables-hostile", "--api-key", "dev"), strings.NewReader(""), &stdout, &stderr)
		if code != 0 {
			t.Fatalf("%s: exit status %d; stderr:\n%s", args, code, stderr.String())
		}
		out := stdout.String()
		if !strings.Contains(out, "hostile") {
			t.Errorf("%s does not show the service or value:\n%s", args, out)
		}
		for _, bad := range []string{"\x1b", "\u009b", "\u202e", "\a"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s prints %q raw:\n%q", args, bad, out)
			}
		}
	}

	run := func(stdout io.Writer, args ...string) (int, string) {
		var stderr bytes.Buffer
		code := Main(ctx, append(args, "--url", srv.APIURL, "--username", "tables-hostile", "--api-key", "dev"), strings.NewReader(""), stdout, &stderr)
		return code, stderr.String()
	}
	// config get prints the value as stored for scripts (quoted on a
	// terminal: TestConfigGetOnATerminal).
	var piped bytes.Buffer
	if code, errs := run(&piped, "config", "get", "hostile.key"); code != 0 || piped.String() != "\x1b[2Jvalue\n" {
		t.Errorf("config get, piped: %q (exit %d, %s); want the value as stored", piped.String(), code, errs)
	}
	// A registry's fault message, which echoes the id asked for.
	if code, errs := run(io.Discard, "services", "get", "x\x1b]0;owned\a\u202e"); code == 0 || strings.ContainsAny(errs, "\x1b\a\u202e") {
		t.Errorf("an error about a hostile id (exit %d) prints it raw: %q", code, errs)
	}
}

// The limits table shows what the server says, which a compromised or
// impostor server could fill with escape sequences.
func TestLimitsQuoteHostileServerText(t *testing.T) {
	t.Parallel()
	srv := impostor(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1.0/123/limits":
			io.WriteString(w, `{"resource":{"services\u001b[2J":200},"rate":{"/.*\u001b]0;owned\u0007":{"limit":1,"used":0,"window":"1d\u001b[1A\u202e"}}}`)
		default:
			http.NotFound(w, r)
		}
	})
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"limits", "--url", srv.URL, "--username", "x", "--api-key", "k"}, strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("limits: exit status %d; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	for _, bad := range []string{"\x1b", "\a", "\u202e"} {
		if strings.Contains(out, bad) {
			t.Errorf("limits prints %q raw:\n%q", bad, out)
		}
	}
	if !strings.Contains(out, `services\x1b[2J`) {
		t.Errorf("limits does not show the escaped resource:\n%q", out)
	}
}

// Once a terminal's output had to be escaped, the rest of it is escaped
// too, after one note: text that looks like an escape is never shown as
// it was rendered next to escapes.
func TestTermWriterEscapesTheRest(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	notes := 0
	w := &termWriter{w: &out, note: func() { notes++ }}
	io.WriteString(w, "clean C:\\dir\n")
	io.WriteString(w, "x \x1b[2J\n")
	io.WriteString(w, `C:\x1b`+"\n")
	if want := "clean C:\\dir\n" + `x \x1b[2J` + "\n" + `C:\\x1b` + "\n"; out.String() != want {
		t.Errorf("shown %q, want %q", out.String(), want)
	}
	if notes != 1 {
		t.Errorf("%d notes, want one", notes)
	}
}

// impostor is a registry that answers logins (user x, tenant 123) and
// hands every other request to api, with a JSON content type: a broken or
// impostor registry, whose answers the commands must not trust.
func impostor(api http.HandlerFunc) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v2.0/tokens" {
			io.WriteString(w, `{"access":{"token":{"id":"tok","expires":"2100-01-01T00:00:00Z","tenant":{"id":"123","name":"x"}}}}`)
			return
		}
		api(w, r)
	}))
}

// A registry's answer never drives the terminal or forges lines of
// svcreg's stderr: a create's token with escape sequences is no token
// (nothing on standard output, one line on standard error), and a fault
// message with newlines is one line.
func TestImpostorTokenAndFaultAreOneSafeLine(t *testing.T) {
	t.Parallel()
	srv := impostor(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/services") {
			w.WriteHeader(201)
			io.WriteString(w, `{"token":"\u001b]0;owned\u0007\u001b[2J\u009b31m\u202e"}`)
			return
		}
		w.WriteHeader(400)
		io.WriteString(w, `{"type":"badRequest","code":400,"message":"Validation error\nsvcreg services get: ok, nothing wrong\n\tforged","details":"d\r\n","txnId":"tx\n1"}`)
	})
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"services", "create", "web1", "--timeout", "30", "--url", srv.URL, "--username", "x", "--api-key", "k"}, strings.NewReader(""), &stdout, &stderr)
	if code != exitError || stdout.Len() != 0 || strings.ContainsAny(stderr.String(), "\x1b\a\u009b\u202e") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("services create with the registry's token %q: exit %d, stdout %q, stderr %q; want exit 1 and one line on stderr", `\x1b]0;owned…`, code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	Main(context.Background(), []string{"services", "get", "web1", "--url", srv.URL, "--username", "x", "--api-key", "k"}, strings.NewReader(""), &stdout, &stderr)
	if n := strings.Count(stderr.String(), "\n"); n != 1 || strings.ContainsAny(stderr.String(), "\r\t") {
		t.Errorf("a fault message took %d lines of stderr:\n%q", n, stderr.String())
	}
}

// A fault's message and details are cut: a registry's 30 kB message is
// not a 30 kB line of stderr (the client reads 64 KiB of a fault); and a
// letter that shows as blank in them is escaped.
func TestImpostorFaultCut(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 30000)
	srv := impostor(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"type":"badRequest","code":400,"message":"api\u3164 %s","details":"%s"}`, long, long)
	})
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	Main(context.Background(), []string{"services", "get", "web1", "--url", srv.URL, "--username", "x", "--api-key", "k"}, strings.NewReader(""), &stdout, &stderr)
	if n := stderr.Len(); n > 4096 || !strings.Contains(stderr.String(), `api\u3164`) {
		t.Errorf("a 30 kB fault message took %d bytes of stderr; want it cut, and the blank letter escaped:\n%.300q", n, stderr.String())
	}
}

// Registry text in a table is Go-quoted when it holds what does not
// print as it is, letters that show as blank included ("api\u3164"
// looks like "api").
func TestRegistryTextOnATerminal(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"api":         "api",
		"Grüße x":     "Grüße x",
		"\u202edorp":  `"\u202edorp"`,
		"api\u3164":   `"api\u3164"`,
		"\u2800":      `"\u2800"`,
		"\x1b[2Jhi\a": `"\x1b[2Jhi\a"`,
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %s; want %s", in, got, want)
		}
	}
}

// Tags and metadata that hold the lists' separators are quoted, so that
// one service never prints as another: a tag "prod,canary" is not the two
// tags prod and canary, nor a tag holding " metadata=ip=…" the service's
// metadata.
func TestTablesTellListsApart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tags []string
		meta map[string]string
		want string
	}{
		{[]string{"prod", "canary"}, map[string]string{"ip": "10.0.0.1", "port": "80"}, `prod,canary ip=10.0.0.1,port=80`},
		{[]string{"prod,canary"}, map[string]string{"ip": "10.0.0.1,port=80"}, `"prod,canary" ip="10.0.0.1,port=80"`},
		{[]string{"www metadata=ip=10.6.6.6"}, map[string]string{"k": ""}, `"www metadata=ip=10.6.6.6" k=""`},
		{[]string{`a"b`, `c\d`}, map[string]string{"a=b": "c"}, `"a\"b","c\\d" "a=b"=c`},
		// A table shows an empty cell as -.
		{[]string{"-"}, map[string]string{"-": "-"}, `"-" "-"="-"`},
	} {
		if got := joinTags(tc.tags) + " " + joinMetadata(tc.meta); got != tc.want {
			t.Errorf("tags %q, metadata %q shown as %s, want %s", tc.tags, tc.meta, got, tc.want)
		}
	}
}

// A table cell shows no value as another: empty as -, the value - and a
// value that starts with a quote quoted, as a value Inline quotes is.
func TestCellsTellValuesApart(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":          "-",
		"-":         `"-"`,
		"--":        "--",
		"a\tb":      `"a\tb"`,
		`"a\tb"`:    `"\"a\\tb\""`,
		`"`:         `"\""`,
		`a"b`:       `a"b`,
		"10.0.0.1":  "10.0.0.1",
		"\"\x1b[2J": `"\"\x1b[2J"`,
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %s; want %s", in, got, want)
		}
	}
	seen := map[string]string{}
	for _, in := range []string{"", "-", `"-"`, "a\tb", `"a\tb"`, `""`} {
		got := cell(in)
		if other, ok := seen[got]; ok {
			t.Errorf("cell(%q) and cell(%q) both show %s", in, other, got)
		}
		seen[got] = in
	}
}

// services get shows metadata keys quoted as lists do: no key shows as
// another.
func TestServiceTableTellsKeysApart(t *testing.T) {
	t.Parallel()
	keys := []string{"a\tb", `"a\tb"`, "-", `"-"`, "a b", "ip"}
	seen := map[string]string{}
	for _, k := range keys {
		var out strings.Builder
		if err := writeServiceTable(&out, registry.Service{ID: "svc", Metadata: map[string]string{k: "v"}}); err != nil {
			t.Fatal(err)
		}
		var label string
		for line := range strings.Lines(out.String()) {
			if l, ok := strings.CutPrefix(line, "metadata."); ok {
				label = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), "v"))
			}
		}
		if other, ok := seen[label]; ok {
			t.Errorf("metadata keys %q and %q both show as metadata.%s", k, other, label)
		}
		seen[label] = k
	}
	if _, ok := seen["ip"]; !ok {
		t.Errorf("a plain key is not shown as it is: %q", seen)
	}
}

// A list answer that is a JSON string, or whose values are one, is told
// in one line of stderr: the registry's string is quoted and cut, and
// forges no line of svcreg's and drives no terminal.
func TestImpostorListStringIsOneSafeLine(t *testing.T) {
	t.Parallel()
	forged := `"x\nsvcreg services list: ok, nothing wrong\u001b[2J` + strings.Repeat("y", 30000) + `"`
	for _, body := range []string{forged, `{"values":` + forged + `}`} {
		srv := impostor(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"services", "list", "--url", srv.URL, "--username", "x", "--api-key", "k"}, strings.NewReader(""), &stdout, &stderr)
		srv.Close()
		if errs := stderr.String(); code != exitError || strings.Count(errs, "\n") != 1 || strings.ContainsAny(errs, "\x1b") || len(errs) > 4096 {
			t.Errorf("services list of the answer %.60s…: exit %d, stderr %.300q; want exit 1 and one short line", body, code, errs)
		}
	}
}

// A --marker that is not an event id is a usage mistake (exit 2) that
// names the flag, for events list and events tail alike, and nothing is
// sent.
func TestEventsRefusesAMarkerThatIsNoEventID(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	srv := impostor(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) })
	t.Cleanup(srv.Close)
	for _, cmd := range []string{"list", "tail"} {
		for _, m := range []string{"zzz", "00000000-0000-4000-8000-000000000000"} {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), []string{"events", cmd, "--marker", m, "--url", srv.URL, "--username", "x", "--api-key", "k"}, nil, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), "--marker "+strconv.Quote(m)+": not an event id") {
				t.Errorf("events %s --marker %s: exit status %d, stderr:\n%s\nwant 2 and the flag named", cmd, m, code, stderr.String())
			}
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests sent; want none", n)
	}
}
