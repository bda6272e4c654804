package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
)

// The HAProxy runtime API end to end: `svcreg template` as a child
// process, the real server, and a real HAProxy in master-worker mode, with
// keep-alive clients sending requests through it while services come, go
// and move.

// runtimeTemplate renders one backend of the services tagged http.
const runtimeTemplate = `# svcreg
backend api
    balance roundrobin
    option httpchk GET /
{{- range servicesWithTag "http" }}
    server {{ .ID }} {{ .Metadata.ip }}:{{ .Metadata.port }} check{{ with .Metadata.extra }} {{ . }}{{ end }}
{{- end }}
{{- range servicesWithTag "admin" }}

backend {{ .ID }}
    server {{ .ID }} {{ .Metadata.ip }}:{{ .Metadata.port }}
{{- end }}
`

// runtimeSetup is HAProxy (a daemon, which a reload replaces), a registry,
// and a renderer config for them.
type runtimeSetup struct {
	h       *haproxytest.HAProxy
	c       *registry.Client
	env     []string
	config  string
	reloads string // one line per reload command run
}

// runtimeOptions vary the renderer config of a runtimeSetup.
type runtimeOptions struct {
	// runtime is whether the template uses the runtime API (else every
	// change reloads).
	runtime bool
	// waitMin is [wait]'s min (max is 100ms); "" is 10ms.
	waitMin string
	// check, if set, runs before HAProxy's check: a shell command given
	// the staged file as $1, which fails the check when it fails.
	check string
	// splay is the template's splay; "" is none.
	splay string
}

// newRuntimeSetup writes the renderer config.
func newRuntimeSetup(t testing.TB, user string, o runtimeOptions) *runtimeSetup {
	t.Helper()
	s := &runtimeSetup{h: haproxytest.Start(t, "# svcreg\nbackend api\n    balance roundrobin\n    option httpchk GET /\n", false)}
	_, s.c, s.env = registryEnv(t, testserver.Options{}, user)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "backends.tmpl")
	os.WriteFile(tmpl, []byte(runtimeTemplate), 0o644)
	s.reloads = filepath.Join(dir, "reloads")
	rt, check := "", s.h.CheckCommand()
	if o.runtime {
		rt = fmt.Sprintf("runtime = \"haproxy\"\nruntime_socket = %q\nruntime_drain_timeout = \"5s\"\n", s.h.Socket)
	}
	if o.check != "" {
		check = fmt.Sprintf("sh -c '%s' check {{.Staged}} && %s", o.check, check)
	}
	if o.waitMin == "" {
		o.waitMin = "10ms"
	}
	if o.splay != "" {
		rt += fmt.Sprintf("splay = %q\n", o.splay)
	}
	s.config = filepath.Join(dir, "render.toml")
	toml := fmt.Sprintf(`listen = "127.0.0.1:%d"
[wait]
min = %q
max = "100ms"
[[template]]
source = %q
destination = %q
check = %q
reload = "echo reload >> %s && %s"
%s`, freeport.Port(t), o.waitMin, tmpl, s.h.Backends, check, s.reloads, s.h.ReloadCommand(), rt)
	if err := os.WriteFile(s.config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *runtimeSetup) listen(t testing.TB) string {
	for _, l := range strings.Split(readString(s.config), "\n") {
		if v, ok := strings.CutPrefix(l, "listen = "); ok {
			return strings.Trim(v, `"`)
		}
	}
	t.Fatal("no listen")
	return ""
}

// liveServers reads HAProxy's servers of backend api: name -> port.
func (s *runtimeSetup) liveServers(t testing.TB) map[string]string {
	out, err := haproxytest.Command(s.h.Socket, "show servers state api")
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n")[2:] {
		if f := strings.Fields(l); len(f) > 18 {
			m[f[3]] = f[18] // srv_name, srv_port
		}
	}
	return m
}

// instance is one backend process of a service: an HTTP server on its own
// port that counts the requests (POSTs: not HAProxy's health checks) it
// started and finished.
type instance struct {
	id       string
	srv      *http.Server
	port     string
	started  atomic.Int64
	finished atomic.Int64
	// registered is when the registry was told about this instance (the
	// write call began); event is when the registry made the event of
	// that write (the time in its id); first is when it first served a
	// request.
	registered time.Time
	event      time.Time
	firstOnce  sync.Once
	first      atomic.Int64 // unix nanoseconds
	moved      bool         // retired by a move, not a leave
	// atRemoval is started when HAProxy stopped routing to it; -1 before.
	atRemoval atomic.Int64
}

func startInstance(t testing.TB, id string) *instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{id: id}
	in.atRemoval.Store(-1)
	_, in.port, _ = net.SplitHostPort(ln.Addr().String())
	name := id + "@" + in.port
	in.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost { // HAProxy's health check
			return
		}
		in.started.Add(1)
		in.firstOnce.Do(func() { in.first.Store(time.Now().UnixNano()) })
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
		in.finished.Add(1)
	})}
	go in.srv.Serve(ln)
	t.Cleanup(func() { in.srv.Close() })
	return in
}

// load is the loadclients program (internal/testprog/loadclients): clients
// sending POST requests on keep-alive connections, in a process of their
// own, as clients are (sharing the test's process, their goroutines would
// delay its backends' first requests, which the churn measures), built
// without the race detector.
type load struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout bytes.Buffer
	loadResult
}

// loadResult is what the clients saw: cut counts connections the load
// balancer closed.
type loadResult struct {
	OK, Failed, Cut int64
	Errs            []string
}

var loadClients = sync.OnceValues(func() (string, error) {
	dir, err := testprog.SourceDir("..", "..", "internal", "testprog", "loadclients")
	if err != nil {
		return "", err
	}
	return testprog.Build(dir)
})

func startLoad(t testing.TB, url string, clients int, pause time.Duration) *load {
	t.Helper()
	bin, err := loadClients()
	if err != nil {
		t.Fatal(err)
	}
	l := &load{cmd: exec.Command(bin, "-url", url, "-clients", fmt.Sprint(clients), "-pause", pause.String())}
	l.cmd.Stdout, l.cmd.Stderr = &l.stdout, os.Stderr
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.stdin.Close(); l.cmd.Wait() })
	return l
}

// halt stops the clients and reads what they saw.
func (l *load) halt(t testing.TB) {
	t.Helper()
	l.stdin.Close()
	if err := l.cmd.Wait(); err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := json.Unmarshal(l.stdout.Bytes(), &l.loadResult); err != nil {
		t.Fatalf("load: %v: %q", err, l.stdout.String())
	}
}

// loadShape is the churn's clients: how many, and how long each pauses
// after a request; and how often the churn reads HAProxy's servers to
// tell when a retired instance stopped being routed to (0: every 10 ms).
type loadShape struct {
	clients int
	pause   time.Duration
	watch   time.Duration
}

// churnResult is what a churn run saw.
type churnResult struct {
	ok, failed, cut int64
	errs            []string
	// latencies are, for every instance that joined or moved, the time
	// from the registry's event of it to its first request; fromWrite,
	// from the start of the write call that made the event (the client's
	// request, authentication and the committed write on top).
	latencies, fromWrite []time.Duration
	instances            []*instance
	retired              []*instance
	workers              int // HAProxy workers started
	reloads              int
}

// churn runs clients against HAProxy for d while, every 200 ms, a service
// joins, leaves, or moves to a new port (a new instance; the old one is
// retired once HAProxy no longer routes to it). On a loaded machine a step
// takes longer than 200 ms: the churn goes on past d until it has made the
// d/200ms steps, so that what it shows does not shrink with the load.
func churn(t testing.TB, s *runtimeSetup, d time.Duration, l loadShape) churnResult {
	t.Helper()
	ctx := context.Background()
	var (
		mu      sync.Mutex
		live    = map[string]*instance{} // by service id
		retired []*instance
		all     []*instance
		next    int
	)
	register := func(id string, move bool) {
		in := startInstance(t, id)
		in.registered = time.Now()
		md := map[string]string{"ip": "127.0.0.1", "port": in.port}
		var err error
		if move {
			err = s.c.UpdateService(ctx, id, registry.ServicePatch{Metadata: md})
		} else {
			_, err = s.c.CreateService(ctx, registry.Service{ID: id, Tags: []string{"http"}, Metadata: md, HeartbeatTimeout: 120})
		}
		if err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if old := live[id]; old != nil {
			old.moved = true
			retired = append(retired, old)
		}
		live[id] = in
		all = append(all, in)
	}
	for ; next < 4; next++ {
		register(fmt.Sprintf("svc-%03d", next), false)
	}
	eventuallyTrue(t, "HAProxy to route to the first services", func() bool { return len(s.liveServers(t)) == 4 })
	startWorkers := s.h.Worker(t)

	// The watcher of retirements: an instance is retired when no server of
	// HAProxy's has its port; from then on it must get no new request.
	watchDone, watchStop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-watchStop:
				return
			case <-time.After(cmp.Or(l.watch, 10*time.Millisecond)):
			}
			state := s.liveServers(t)
			if state == nil {
				continue
			}
			mu.Lock()
			for _, in := range retired {
				if in.atRemoval.Load() < 0 && !slices.Contains(slices.Collect(maps.Values(state)), in.port) && in.started.Load() == in.finished.Load() {
					in.atRemoval.Store(in.started.Load())
				}
			}
			mu.Unlock()
		}
	}()

	ld := startLoad(t, s.h.URL(), l.clients, l.pause)
	rng := rand.New(rand.NewPCG(1, 2))
	const step = 200 * time.Millisecond
	end := time.Now().Add(d)
	for steps := 0; steps < int(d/step) || time.Now().Before(end); steps++ {
		time.Sleep(step)
		mu.Lock()
		// Services that have served a request may leave or move.
		var served []string
		for id, in := range live {
			if in.started.Load() > 0 {
				served = append(served, id)
			}
		}
		n := len(live)
		mu.Unlock()
		slices.Sort(served)
		switch op := rng.IntN(3); {
		case n < 3 || (op == 0 && n < 8) || len(served) == 0:
			register(fmt.Sprintf("svc-%03d", next), false)
			next++
		case op == 1 && n > 3:
			id := served[rng.IntN(len(served))]
			if err := s.c.DeleteService(ctx, id); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			retired = append(retired, live[id])
			delete(live, id)
			mu.Unlock()
		default:
			register(served[rng.IntN(len(served))], true)
		}
	}
	// Let the last changes land, then stop.
	eventuallyTrue(t, "HAProxy to have the last services", func() bool {
		mu.Lock()
		defer mu.Unlock()
		state := s.liveServers(t)
		if len(state) != len(live) {
			return false
		}
		for id, in := range live {
			if state[id] != in.port {
				return false
			}
		}
		return true
	})
	eventuallyTrue(t, "retired instances to be out of HAProxy", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, in := range retired {
			if in.atRemoval.Load() < 0 {
				return false
			}
		}
		return true
	})
	eventuallyTrue(t, "the last instances to be served", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, in := range live {
			if in.started.Load() == 0 {
				return false
			}
		}
		return true
	})
	ld.halt(t)
	close(watchStop)
	<-watchDone

	r := churnResult{ok: ld.OK, failed: ld.Failed, cut: ld.Cut, errs: ld.Errs,
		instances: all, retired: retired, reloads: lines(s.reloads)}
	if w := s.h.Worker(t); w != startWorkers {
		r.workers = 1
	}
	eventTimes(t, s.c, all)
	for _, in := range all[4:] { // the first four were there before the load
		if f := in.first.Load(); f > 0 && !in.event.IsZero() {
			r.latencies = append(r.latencies, time.Unix(0, f).Sub(in.event))
			r.fromWrite = append(r.fromWrite, time.Unix(0, f).Sub(in.registered))
		}
	}
	return r
}

// eventTimes sets each instance's event: the time in the id of the
// service.join or service.update event that gave its service its port.
func eventTimes(t testing.TB, c *registry.Client, all []*instance) {
	t.Helper()
	byKey := map[[2]string]*instance{}
	for _, in := range all {
		byKey[[2]string{in.id, in.port}] = in
	}
	for ev, err := range c.ListEvents(context.Background(), registry.EventListOptions{Limit: 1000}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != registry.ServiceJoin && ev.Type != registry.ServiceUpdate {
			continue
		}
		svc, err := ev.Service()
		if err != nil {
			t.Fatal(err)
		}
		id, err := timeuuid.Parse(ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if in := byKey[[2]string{svc.ID, svc.Metadata["port"]}]; in != nil {
			in.event = id.Time()
		}
	}
}

// TestTemplateHAProxyRuntimeChurn: 100 keep-alive clients through HAProxy
// while services join, leave and move every 200 ms for 20 s, applied
// through the runtime API: no failed request, no reload, no connection
// cut, every new instance served, no request to a retired instance after
// HAProxy let go of it, and all its requests finished.
func TestTemplateHAProxyRuntimeChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s of load")
	}
	t.Parallel()
	s := newRuntimeSetup(t, "e2e-runtime-churn", runtimeOptions{runtime: true})
	d := startDaemon(t, s.env, "--config", s.config)
	// 100 clients at about 500 requests/s: enough that every instance
	// is served within tens of ms of HAProxy taking it, and a retired one
	// would be sent requests it must not get; the rest of the CPU is left
	// to the rest of the suite (the benchmark sends about 8×).
	r := churn(t, s, 20*time.Second, loadShape{clients: 100, pause: 200 * time.Millisecond})

	t.Logf("%d requests, %d instances, %d retired", r.ok, len(r.instances), len(r.retired))
	if r.failed > 0 {
		t.Errorf("%d requests failed, e.g. %q", r.failed, r.errs)
	}
	if r.reloads > 0 || r.workers > 0 {
		t.Errorf("HAProxy was reloaded (%d reload commands, new worker: %t)", r.reloads, r.workers > 0)
	}
	if r.cut > 0 {
		t.Errorf("HAProxy closed %d keep-alive connections", r.cut)
	}
	if len(r.retired) < 20 {
		t.Errorf("only %d instances were retired; the churn did not churn", len(r.retired))
	}
	for _, in := range r.instances {
		if in.started.Load() == 0 {
			t.Errorf("instance %s@%s got no request", in.id, in.port)
		}
		if in.started.Load() != in.finished.Load() {
			t.Errorf("instance %s@%s: %d requests started, %d finished", in.id, in.port, in.started.Load(), in.finished.Load())
		}
	}
	for _, in := range r.retired {
		if got, at := in.started.Load(), in.atRemoval.Load(); got != at {
			t.Errorf("retired instance %s@%s got %d requests after HAProxy stopped routing to it (moved: %t)", in.id, in.port, got-at, in.moved)
		}
	}
	if !strings.Contains(d.output(), "applied through the runtime API") {
		t.Error("no runtime API pass was logged")
	}
}

// TestTemplateHAProxyRuntimeNoSplay: a splay spreads reloads; a change
// applied through the runtime API is not held back by it.
func TestTemplateHAProxyRuntimeNoSplay(t *testing.T) {
	t.Parallel()
	s := newRuntimeSetup(t, "e2e-runtime-splay", runtimeOptions{runtime: true, splay: "1h"})
	startDaemon(t, s.env, "--config", s.config)
	a := startInstance(t, "a")
	createService(t, s.c, "srv-a", 120, []string{"http"}, map[string]string{"ip": "127.0.0.1", "port": a.port})
	eventuallyTrue(t, "a in HAProxy", func() bool { return s.liveServers(t)["srv-a"] == a.port })
	if n := lines(s.reloads); n != 0 {
		t.Fatalf("a server change reloaded (%d)", n)
	}
}

// TestTemplateHAProxyRuntimeFallbacks: what the runtime API cannot do
// goes through check, install and reload, and the live state follows the
// file in every case.
func TestTemplateHAProxyRuntimeFallbacks(t *testing.T) {
	t.Parallel()
	s := newRuntimeSetup(t, "e2e-runtime-fallback", runtimeOptions{runtime: true})
	d := startDaemon(t, s.env, "--config", s.config)
	ctx := context.Background()
	a, b := startInstance(t, "a"), startInstance(t, "b")
	createService(t, s.c, "srv-a", 120, []string{"http"}, map[string]string{"ip": "127.0.0.1", "port": a.port})
	eventuallyTrue(t, "a in HAProxy", func() bool { return s.liveServers(t)["srv-a"] == a.port })
	if n := lines(s.reloads); n != 0 {
		t.Fatalf("a server change reloaded (%d)", n)
	}
	health := "http://" + s.listen(t) + "/healthz"

	// A new backend is a structural change: reloaded.
	worker := s.h.Worker(t)
	createService(t, s.c, "admin-x", 120, []string{"admin"}, map[string]string{"ip": "127.0.0.1", "port": b.port})
	eventuallyTrue(t, "a reload for the new backend", func() bool { return lines(s.reloads) == 1 })
	eventuallyTrue(t, "a new worker", func() bool { return s.h.Worker(t) != worker })
	if !strings.Contains(d.output(), "sections were added or removed") {
		t.Errorf("the log does not say why it reloaded")
	}

	// A server option the runtime API cannot set: reloaded, nothing
	// half-applied (no runtime command was sent: the server is there only
	// after the reload, with its option).
	createService(t, s.c, "srv-c", 120, []string{"http"}, map[string]string{"ip": "127.0.0.1", "port": b.port, "extra": "cookie cc"})
	eventuallyTrue(t, "a reload for the server option", func() bool { return lines(s.reloads) == 2 })
	eventuallyTrue(t, "c in HAProxy", func() bool { return s.liveServers(t)["srv-c"] == b.port })
	if !strings.Contains(d.output(), `cookie\" is not a keyword`) {
		t.Errorf("the log does not say which option needs the reload")
	}
	if err := s.c.DeleteService(ctx, "srv-c"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "c gone", func() bool { _, ok := s.liveServers(t)["srv-c"]; return !ok })

	// The socket is gone: the change is reloaded, and the log, /metrics and
	// /healthz say why.
	sock := s.h.Socket
	os.Rename(sock, sock+".moved")
	before := lines(s.reloads)
	createService(t, s.c, "srv-d", 120, []string{"http"}, map[string]string{"ip": "127.0.0.1", "port": b.port})
	eventuallyTrue(t, "a fallback reload", func() bool { return lines(s.reloads) == before+1 })
	eventuallyTrue(t, "the new HAProxy's socket", func() bool { _, err := os.Stat(sock); return err == nil })
	eventuallyTrue(t, "d in HAProxy", func() bool { return s.liveServers(t)["srv-d"] == b.port })
	if !strings.Contains(d.output(), "runtime API failed; reloading instead") || !strings.Contains(d.output(), "admin.sock") {
		t.Errorf("the log does not say the runtime API failed and why")
	}
	if h := get(health); !strings.Contains(h, `"outcome": "fallback"`) && !strings.Contains(h, `"fallbacks": 1`) {
		t.Errorf("/healthz does not show the fallback:\n%s", h)
	}
	if m := get(strings.TrimSuffix(health, "healthz") + "metrics"); !strings.Contains(m, `svcreg_template_runtime_failures_total{group=`) ||
		!strings.Contains(m, `step="connect"} 1`) {
		t.Errorf("/metrics does not count the fallback")
	} else {
		// Both ways a change reached HAProxy are timed.
		for _, how := range []string{"runtime", "reload"} {
			if !regexp.MustCompile(`svcreg_template_event_to_live_seconds_count\{how="` + how + `"\} [1-9]`).MatchString(m) {
				t.Errorf("/metrics does not time the changes applied by %s:\n%s", how, m)
			}
		}
	}

	// HAProxy restarted behind svcreg's back: it loads the installed file,
	// and the next change goes through the runtime API again.
	s.h.Stop(t)
	s.h.Run(t)
	before = lines(s.reloads)
	if err := s.c.DeleteService(ctx, "srv-d"); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "d gone after the restart", func() bool {
		st := s.liveServers(t)
		_, ok := st["srv-d"]
		return st != nil && !ok && st["srv-a"] == a.port
	})
	if n := lines(s.reloads); n != before {
		t.Errorf("a server change after the restart reloaded")
	}
}

// TestTemplateHAProxyRuntimeCheckFails: a server change is applied
// through the runtime API before the check has run; when the check then
// fails, the live state is taken back to the installed file (the drained
// server made ready again, the stand-in that was added deleted), without a
// reload, and the next change goes through again.
func TestTemplateHAProxyRuntimeCheckFails(t *testing.T) {
	t.Parallel()
	s := newRuntimeSetup(t, "e2e-runtime-checkfails", runtimeOptions{runtime: true, check: `! grep -q failcheck "$1"`})
	d := startDaemon(t, s.env, "--config", s.config)
	ctx := context.Background()
	a, b, c := startInstance(t, "a"), startInstance(t, "b"), startInstance(t, "c")
	createService(t, s.c, "srv-a", 120, []string{"http"}, map[string]string{"ip": "127.0.0.1", "port": a.port})
	createService(t, s.c, "srv-b", 120, []string{"http"}, map[string]string{"ip": "127.0.0.1", "port": b.port})
	// The runtime API goes ahead of the install: wait for both.
	eventuallyTrue(t, "a and b in HAProxy and the file", func() bool {
		return len(s.liveServers(t)) == 2 && strings.Contains(readString(s.h.Backends), "srv-b")
	})
	installed := readString(s.h.Backends)

	// b moves to c's port, and its line gets what fails the check. The
	// runtime API sees a move it can make, and starts it (a stand-in at
	// the new port, b drained) before the check fails.
	move := func(extra string) {
		t.Helper()
		md := map[string]string{"ip": "127.0.0.1", "port": c.port, "extra": extra}
		if err := s.c.UpdateService(ctx, "srv-b", registry.ServicePatch{Metadata: md}); err != nil {
			t.Fatal(err)
		}
	}
	move("# failcheck")
	eventuallyTrue(t, "the revert", func() bool { return strings.Contains(d.output(), "the live state is the installed files' again") })
	if n := strings.Count(d.output(), "applied through the runtime API"); n < 2 {
		t.Fatal("the move was not applied before the check")
	}
	eventuallyTrue(t, "HAProxy's live servers to be the installed file's", func() bool {
		st := s.liveServers(t)
		return len(st) == 2 && st["srv-a"] == a.port && st["srv-b"] == b.port
	})
	if got := readString(s.h.Backends); got != installed {
		t.Fatalf("the file that failed its check was installed:\n%s", got)
	}
	out, _ := haproxytest.Command(s.h.Socket, "show servers state api")
	for _, l := range strings.Split(out, "\n")[2:] {
		if f := strings.Fields(l); len(f) > 6 && f[3] == "srv-b" && f[6] != "0" {
			t.Fatalf("srv-b has admin state %s after the revert, want 0 (ready):\n%s", f[6], out)
		}
	}
	if h := get("http://" + s.listen(t) + "/healthz"); !strings.Contains(h, `"outcome": "reverted"`) {
		t.Errorf("/healthz does not show the revert:\n%s", h)
	}

	// The same move without what fails the check goes through.
	move("# ok")
	eventuallyTrue(t, "b at c's port", func() bool {
		st := s.liveServers(t)
		return len(st) == 2 && st["srv-b"] == c.port
	})
	if n := lines(s.reloads); n != 0 {
		t.Errorf("%d reloads; the revert and the next change need none", n)
	}
}

// runTemplateChild runs `svcreg template ARGS` as a child process to its
// end.
func runTemplateChild(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"template"}, args...)...)
	cmd.Env = append(append(os.Environ(), execEnv+"=1"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("svcreg template %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestTemplateHAProxyRuntimeOnceAndDry: --once applies a server change
// through the runtime API as the daemon does, and --dry prints the
// commands and sends none.
func TestTemplateHAProxyRuntimeOnceAndDry(t *testing.T) {
	t.Parallel()
	s := newRuntimeSetup(t, "e2e-runtime-once", runtimeOptions{runtime: true})
	a, b := startInstance(t, "a"), startInstance(t, "b")
	createService(t, s.c, "srv-a", 120, []string{"http"}, map[string]string{"ip": "127.0.0.1", "port": a.port})
	worker, file := s.h.Worker(t), readString(s.h.Backends)

	out := runTemplateChild(t, s.env, "--config", s.config, "--once", "--dry")
	if !strings.Contains(out, "no reload; would send to the haproxy runtime API") ||
		!strings.Contains(out, "add server api/srv-a 127.0.0.1:"+a.port+" check") {
		t.Fatalf("--dry does not print the runtime commands:\n%s", out)
	}
	if len(s.liveServers(t)) != 0 || readString(s.h.Backends) != file {
		t.Fatal("--dry changed HAProxy or the file")
	}

	runTemplateChild(t, s.env, "--config", s.config, "--once")
	if got := s.liveServers(t)["srv-a"]; got != a.port {
		t.Fatalf("after --once, srv-a is at %q in HAProxy, want %s", got, a.port)
	}
	if err := s.c.UpdateService(context.Background(), "srv-a", registry.ServicePatch{Metadata: map[string]string{"ip": "127.0.0.1", "port": b.port}}); err != nil {
		t.Fatal(err)
	}
	runTemplateChild(t, s.env, "--config", s.config, "--once")
	if got := s.liveServers(t); got["srv-a"] != b.port || len(got) != 1 {
		t.Fatalf("after the move, HAProxy has %v, want srv-a at %s", got, b.port)
	}
	if lines(s.reloads) != 0 || s.h.Worker(t) != worker {
		t.Fatal("--once reloaded HAProxy")
	}
	if !strings.Contains(readString(s.h.Backends), "server srv-a 127.0.0.1:"+b.port) {
		t.Fatal("--once did not install the file")
	}

	// A new backend: --dry says it would reload, and why.
	createService(t, s.c, "admin-y", 120, []string{"admin"}, map[string]string{"ip": "127.0.0.1", "port": a.port})
	if out := runTemplateChild(t, s.env, "--config", s.config, "--once", "--dry"); !strings.Contains(out, "would reload") || !strings.Contains(out, "sections were added") {
		t.Fatalf("--dry does not say it would reload and why:\n%s", out)
	}
}

// BenchmarkHAProxyRuntimeVsReload runs the churn of
// TestTemplateHAProxyRuntimeChurn (100 keep-alive clients, here each
// pausing 20 ms after each request, about 4,000 requests a second; a
// join, leave or move every 200 ms; 20 s) through the runtime API and with
// every change reloaded, each with [wait] min 10ms (the tests' setting)
// and 0 (a pass as soon as a change arrives; changes that arrive during a
// pass are coalesced into the next). It reports, for each, the time from the
// registry's event to the first request served by the new instance, and
// the failed requests. The runtime mode runs first: the processes a
// reload leaves behind, finishing their connections, would load the
// machine under it. Run it with -benchtime 1x, or with -benchtime 3x
// -timeout 30m for a p99 over three runs' changes (go test runs each part
// once, then three times: about 8 minutes in all).
//
// Its haproxy-alone part, first, is the floor under the runtime mode: the
// same HAProxy, backend and clients, a server joining every 200 ms with
// six kept ready, and no registry and no svcreg: the benchmark sends the
// runtime API commands itself ("add server",
// "enable health", "set server … state ready"; a leaving server is put in
// maintenance: its requests finish, and it gets no new one). It reports
// the time from sending a join's commands to the new instance's first
// request: how long HAProxy takes to send a server it has just made ready
// its first request, at this load with six servers.
func BenchmarkHAProxyRuntimeVsReload(b *testing.B) {
	b.Run("haproxy-alone", func(b *testing.B) {
		var lat []time.Duration
		for i := 0; i < b.N; i++ {
			lat = append(lat, haproxyAlone(b, 20*time.Second, loadShape{clients: 100, pause: 20 * time.Millisecond})...)
		}
		b.ReportMetric(percentile(lat, 0.5), "p50-ms")
		b.ReportMetric(percentile(lat, 0.99), "p99-ms")
		b.ReportMetric(float64(len(lat)), "changes")
	})
	for _, mode := range []struct {
		name    string
		runtime bool
	}{{"runtime", true}, {"reload", false}} {
		for _, wait := range []string{"10ms", "0s"} {
			b.Run(mode.name+"/wait-min-"+wait, func(b *testing.B) {
				benchChurn(b, mode.name, runtimeOptions{runtime: mode.runtime, waitMin: wait})
			})
		}
	}
}

// benchChurn runs b.N churns and reports their changes together: with
// -benchtime 3x, the p99 is over about 220 changes instead of 73.
func benchChurn(b *testing.B, mode string, o runtimeOptions) {
	var all churnResult
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		s := newRuntimeSetup(b, "bench-"+mode, o)
		d := startDaemon(b, s.env, "--config", s.config)
		// The retirements, which the benchmark does not check, are
		// timed coarsely: HAProxy answers fewer commands.
		r := churn(b, s, 20*time.Second, loadShape{clients: 100, pause: 20 * time.Millisecond, watch: 100 * time.Millisecond})
		all.latencies = append(all.latencies, r.latencies...)
		all.fromWrite = append(all.fromWrite, r.fromWrite...)
		all.ok, all.failed, all.cut, all.reloads = all.ok+r.ok, all.failed+r.failed, all.cut+r.cut, all.reloads+r.reloads
		// How long the runtime API part of a pass took (the drains
		// finish after it, in the background), from the renderer's log.
		for _, m := range applyTook.FindAllStringSubmatch(d.output(), -1) {
			if v, err := time.ParseDuration(m[1]); err == nil {
				took = append(took, v)
			}
		}
		// The next run starts on an idle machine.
		d.stop()
		s.h.Stop(b)
	}
	b.ReportMetric(percentile(all.latencies, 0.5), "p50-ms")
	b.ReportMetric(percentile(all.latencies, 0.99), "p99-ms")
	b.ReportMetric(percentile(all.fromWrite, 0.5), "write-p50-ms")
	b.ReportMetric(percentile(all.fromWrite, 0.99), "write-p99-ms")
	if o.runtime {
		b.ReportMetric(percentile(took, 0.5), "apply-p50-ms")
		b.ReportMetric(percentile(took, 0.99), "apply-p99-ms")
	}
	b.ReportMetric(float64(all.failed), "failed")
	b.ReportMetric(float64(all.ok+all.failed), "requests")
	b.ReportMetric(float64(all.cut), "cut-conns")
	b.ReportMetric(float64(all.reloads), "reloads")
	b.ReportMetric(float64(len(all.latencies)), "changes")
}

// applyTook finds how long each runtime API pass took in the renderer's log.
var applyTook = regexp.MustCompile(`runtime API, no reload".* took=(\S+)`)

// haproxyAlone adds a server to HAProxy through its runtime API every
// 200 ms for d, with l's clients sending requests, keeping the last six
// ready (the others in maintenance), and returns, for each server added,
// the time from sending its commands to its instance's first request.
func haproxyAlone(t testing.TB, d time.Duration, l loadShape) []time.Duration {
	t.Helper()
	h := haproxytest.Start(t, "backend api\n    balance roundrobin\n    option httpchk GET /\n", false)
	send := func(cmds ...string) {
		t.Helper()
		// "add server" answers "New server registered."; the others
		// answer nothing, or why not.
		out, err := haproxytest.Command(h.Socket, strings.Join(cmds, "; "))
		if rest := strings.TrimSpace(strings.ReplaceAll(out, "New server registered.", "")); err != nil || rest != "" {
			t.Fatalf("%q: %v %s", cmds, err, out)
		}
	}
	type added struct {
		in   *instance
		name string
		sent time.Time
	}
	var live, all []added
	join := func(n int) {
		in := startInstance(t, fmt.Sprintf("s%03d", n))
		a := added{in: in, name: "api/" + in.id, sent: time.Now()}
		send("add server "+a.name+" 127.0.0.1:"+in.port+" check", "enable health "+a.name, "set server "+a.name+" state ready")
		live, all = append(live, a), append(all, a)
	}
	for n := 0; n < 4; n++ {
		join(n)
	}
	ld := startLoad(t, h.URL(), l.clients, l.pause)
	for n := 4; n < 4+int(d/(200*time.Millisecond)); n++ {
		time.Sleep(200 * time.Millisecond)
		join(n)
		if len(live) > 6 {
			old := live[0].name
			live = live[1:]
			send("set server " + old + " state maint")
		}
	}
	eventuallyTrue(t, "the last instance to be served", func() bool { return live[len(live)-1].in.first.Load() > 0 })
	ld.halt(t)
	h.Stop(t)
	if ld.Failed > 0 {
		t.Fatalf("%d requests failed, e.g. %q", ld.Failed, ld.Errs)
	}
	var lat []time.Duration
	for _, a := range all[4:] {
		if f := a.in.first.Load(); f > 0 {
			lat = append(lat, time.Unix(0, f).Sub(a.sent))
		}
	}
	return lat
}

// percentile returns the p-quantile of ds in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000
}
