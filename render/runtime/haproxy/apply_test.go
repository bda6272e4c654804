package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/haproxytest"
	"github.com/svcreg/svcreg/render/runtime"
)

// These tests run the real HAProxy (Debian's 2.6 in CI) in master-worker
// mode on loopback, with a stats socket at level admin.

// counter is a backend that counts its requests.
type counter struct {
	srv  *httptest.Server
	n    atomic.Int64
	port int
}

func newCounter(t *testing.T, name string) *counter {
	c := &counter{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		io.WriteString(w, name)
	}))
	t.Cleanup(c.srv.Close)
	c.port = c.srv.Listener.Addr().(*net.TCPAddr).Port
	return c
}

func backendsFile(servers ...string) string {
	return "backend api\n    balance roundrobin\n" + strings.Join(servers, "")
}

func srvLine(name string, c *counter, extra string) string {
	return fmt.Sprintf("    server %s 127.0.0.1:%d%s\n", name, c.port, extra)
}

// apply plans and applies old -> new and installs new, as the renderer
// does.
func apply(t *testing.T, h *haproxytest.HAProxy, socket, old, new string) error {
	t.Helper()
	return applyDrain(t, h, socket, old, new, 2*time.Second)
}

func applyDrain(t *testing.T, h *haproxytest.HAProxy, socket, old, new string, drain time.Duration) error {
	t.Helper()
	a, err := New(runtime.Settings{Socket: socket, DrainTimeout: drain})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Plan([]byte(old), []byte(new))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(h.Backends, []byte(new), 0o644)
	return p.Apply(context.Background())
}

func hit(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

func TestApplyAddChangeRemove(t *testing.T) {
	t.Parallel()
	a, b, c, b2 := newCounter(t, "a"), newCounter(t, "b"), newCounter(t, "c"), newCounter(t, "b2")
	v1 := backendsFile(srvLine("a", a, " check"), srvLine("b", b, ""))
	h := haproxytest.Start(t, v1, true)
	worker := h.Worker(t)
	url := h.URL()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for i := 0; i < 20; i++ { // leaves idle server connections to a and b
		hit(t, client, url)
	}

	// c joins, b moves to another port, a leaves.
	v2 := backendsFile(srvLine("b", b2, " weight 3"), srvLine("c", c, " check"))
	if err := apply(t, h, h.Socket, v1, v2); err != nil {
		t.Fatal(err)
	}
	aBefore, bBefore := a.n.Load(), b.n.Load()
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		seen[hit(t, client, url)]++
	}
	if seen["a"] > 0 || seen["b"] > 0 || seen["b2"] == 0 || seen["c"] == 0 {
		t.Fatalf("after the change, requests went to %v", seen)
	}
	if a.n.Load() != aBefore || b.n.Load() != bBefore {
		t.Fatal("a removed or moved server still got requests")
	}
	if got := h.Worker(t); got != worker {
		t.Fatalf("the worker changed from %s to %s: HAProxy was reloaded", worker, got)
	}

	// The file is what HAProxy loads on a restart: the same state.
	h.Stop(t)
	h.Run(t)
	v3 := backendsFile(srvLine("b", b2, " weight 3"), srvLine("c", c, " check disabled"))
	if err := apply(t, h, "master:"+h.Master, v2, v3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if got := hit(t, client, url); got != "b2" {
			t.Fatalf("a disabled server got a request (%s)", got)
		}
	}
}

func TestApplyFailures(t *testing.T) {
	t.Parallel()
	a, b := newCounter(t, "a"), newCounter(t, "b")
	v1 := backendsFile(srvLine("a", a, ""))
	h := haproxytest.Start(t, v1, true)
	v2 := backendsFile(srvLine("a", a, ""), srvLine("b", b, ""))

	var f *runtime.Failure
	err := apply(t, h, filepath.Join(h.Dir, "missing.sock"), v1, v2)
	if !errors.As(err, &f) || f.Step != "connect" || !strings.Contains(err.Error(), "missing.sock") {
		t.Fatalf("missing socket: got %v", err)
	}
	// HAProxy refuses a server it cannot add (an id already taken): the
	// adapter reports it, and the verification would not pass either.
	v3 := backendsFile(srvLine("a", a, ""), srvLine("b", b, " id 1"))
	if err := apply(t, h, h.Socket, v1, v3); !errors.As(err, &f) || f.Step != "command" || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("refused command: got %v", err)
	}
	// A server added by hand is not in the file: it is removed.
	c, _ := newCLI(h.Socket, DefaultTimeout)
	c.run(context.Background(), "add server api/x 127.0.0.1:1")
	v4 := backendsFile(srvLine("a", a, " weight 2"))
	if err := apply(t, h, h.Socket, v1, v4); err != nil {
		t.Fatal(err)
	}
	// A live server the installed file does not describe, which the new
	// file adds: its settings are unknown, so the adapter gives up
	// rather than guessing.
	c.run(context.Background(), "add server api/b 127.0.0.1:1")
	if err := apply(t, h, h.Socket, v4, v2); !errors.As(err, &f) || f.Step != "verify" || !strings.Contains(err.Error(), "api/b") {
		t.Fatalf("drift: got %v", err)
	}
}

// slow is a backend whose requests wait until released.
type slow struct {
	port    int
	arrived chan struct{}
	release chan struct{}
}

func newSlow(t *testing.T) *slow {
	sl := &slow{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sl.arrived <- struct{}{}
		select {
		case <-sl.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slow")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(sl.release) })
	sl.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return sl
}

// drainSetup is HAProxy with servers s (slow) and o; v2 removes s. A
// request is in flight on s when it returns; done tells how it ended (nil:
// answered by s).
func drainSetup(t *testing.T) (sl *slow, h *haproxytest.HAProxy, v1, v2 string, done <-chan error) {
	return drainSetupWith(t, "")
}

// drainSetupWith is drainSetup with sections before the backend.
func drainSetupWith(t *testing.T, before string) (sl *slow, h *haproxytest.HAProxy, v1, v2 string, done <-chan error) {
	sl, other := newSlow(t), newCounter(t, "other")
	v1 = before + backendsFile(fmt.Sprintf("    server s 127.0.0.1:%d\n", sl.port), srvLine("o", other, ""))
	v2 = before + backendsFile(srvLine("o", other, ""))
	h = haproxytest.Start(t, v1, true)
	ch := make(chan error, 1)
	go func() {
		for { // roundrobin: one of the first two requests reaches s
			resp, err := http.Get(h.URL())
			if err != nil {
				ch <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case string(b) == "other":
				continue
			case resp.StatusCode != 200 || string(b) != "slow":
				ch <- fmt.Errorf("%d %s", resp.StatusCode, b)
			default:
				ch <- nil
			}
			return
		}
	}()
	<-sl.arrived
	return sl, h, v1, v2, ch
}

// A removed server with a request in flight: it gets no new request, its
// deletion waits for the request, which completes.
func TestApplyDrainWaitsForInFlight(t *testing.T) {
	t.Parallel()
	sl, h, v1, v2, done := drainSetup(t)
	applied := make(chan error, 1)
	go func() { applied <- applyDrain(t, h, h.Socket, v1, v2, time.Minute) }()

	// While the request is in flight, s is drained, not deleted, and new
	// requests go elsewhere.
	for {
		live := liveState(t, h)
		if live["s"].drain() {
			break
		}
	}
	client := &http.Client{}
	for i := 0; i < 10; i++ {
		if got := hit(t, client, h.URL()); got != "other" {
			t.Fatalf("a draining server got a new request (%s)", got)
		}
	}
	select {
	case err := <-applied:
		t.Fatalf("the removal finished (%v) with a request in flight", err)
	default:
	}
	sl.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("the in-flight request failed: %v", err)
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
}

// An operator reloads HAProxy while a server that left, or moved, drains:
// the new worker loaded the file (no such server, or the server at its new
// address and no stand-in), and the old one, stopping, refuses the drain's
// commands ("Proxy is disabled.") once the request in flight is done. The
// drain ends without an error (which would make the renderer reload
// again), long before its timeout, and the live servers are the file's.
func TestApplyDrainEndsWhenAReloadRemovedTheServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		move bool
	}{{"removed", false}, {"moved", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sl, h, v1, v2, done := drainSetup(t)
			var s2 *counter
			if tc.move {
				s2 = newCounter(t, "s2")
				v2 = strings.Replace(v1, fmt.Sprintf("server s 127.0.0.1:%d", sl.port), fmt.Sprintf("server s 127.0.0.1:%d", s2.port), 1)
			}
			a, bg := drainingAdapter(t, h)
			if err := planApply(t, a, h, v1, v2); err != nil {
				t.Fatal(err)
			}
			reloadToANewWorker(t, h)
			sl.release <- struct{}{}
			bg.waitWithin(t, 20*time.Second)
			if err := <-done; err != nil {
				t.Fatalf("the in-flight request failed: %v", err)
			}
			live := liveState(t, h)
			switch l, ok := live["s"]; {
			case !tc.move && (ok || len(live) != 1):
				t.Errorf("live servers %+v, want o alone", live)
			case tc.move && (len(live) != 2 || l.port != s2.port || l.drain() || l.maint()):
				t.Errorf("live servers %+v, want s at %d, ready, and o", live, s2.port)
			}
		})
	}
}

// An operator reloads HAProxy while a server that left, or moved, drains,
// and the next change is applied before the drain looks again: the new
// process loaded the installed file (no such server, or the server at its
// new address and no stand-in). The drain ends; it does not fail on a
// server the new process never had (at once, or at the drain timeout),
// which would reload the group for nothing.
func TestApplyAfterAReloadEndsTheDrain(t *testing.T) {
	t.Parallel()
	for _, move := range []bool{false, true} {
		t.Run(fmt.Sprint("move=", move), func(t *testing.T) {
			t.Parallel()
			sl, h, v1, v2, done := drainSetup(t)
			var s2 *counter
			if move {
				s2 = newCounter(t, "s2")
				v2 = strings.Replace(v1, fmt.Sprintf("server s 127.0.0.1:%d", sl.port), fmt.Sprintf("server s 127.0.0.1:%d", s2.port), 1)
			}
			bg := newBackground()
			a, err := New(runtime.Settings{Socket: h.Socket, DrainTimeout: 3 * time.Second, Go: bg.goFn})
			if err != nil {
				t.Fatal(err)
			}
			if err := planApply(t, a, h, v1, v2); err != nil {
				t.Fatal(err)
			}
			reloadToANewWorker(t, h)
			c := newCounter(t, "c")
			v3 := v2 + srvLine("c", c, "")
			if err := planApply(t, a, h, v2, v3); err != nil {
				t.Fatal(err)
			}
			sl.release <- struct{}{}
			<-done
			bg.waitWithin(t, 20*time.Second)
			live := liveState(t, h)
			if l, ok := live["s"]; move != ok || len(live) != 2+btoi(move) || (move && (l.port != s2.port || l.drain() || l.maint())) {
				t.Errorf("live servers %+v", live)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// An operator reloads HAProxy while a server that left drains, and the
// drain looks through the master CLI, which goes for a moment while the
// master executes itself again, then reaches the new worker, which loaded
// the installed file. That is no failure (which would reload the group
// again): the drain ends.
func TestApplyDrainThroughTheMasterCLIOutlivesAReload(t *testing.T) {
	t.Parallel()
	sl, h, v1, v2, done := drainSetup(t)
	bg := newBackground()
	a, err := New(runtime.Settings{Socket: "master:" + h.Master, DrainTimeout: time.Minute, Go: bg.goFn})
	if err != nil {
		t.Fatal(err)
	}
	if err := planApply(t, a, h, v1, v2); err != nil {
		t.Fatal(err)
	}
	reloadToANewWorker(t, h)
	bg.waitWithin(t, 20*time.Second)
	sl.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("the in-flight request failed: %v", err)
	}
}

// A frontend named as the backend: "show stat api" would list its
// frontend alone. The drain still sees the server's request end, and
// deletes the server then, not at its timeout.
func TestApplyDrainWithAFrontendOfTheSameName(t *testing.T) {
	t.Parallel()
	front := fmt.Sprintf("frontend api\n    bind 127.0.0.1:%d\n    default_backend api\n", freeport.Port(t))
	sl, h, v1, v2, done := drainSetupWith(t, front)
	applied := make(chan error, 1)
	go func() { applied <- applyDrain(t, h, h.Socket, v1, v2, time.Minute) }()
	for !liveState(t, h)["s"].drain() {
		time.Sleep(5 * time.Millisecond)
	}
	sl.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("the in-flight request failed: %v", err)
	}
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the drain still waits, 20 s after the request it waited for finished")
	}
	if _, ok := liveState(t, h)["s"]; ok {
		t.Error("the drained server was not deleted")
	}
}

// Past the drain timeout, the sessions still on a removed server are cut
// and the server is deleted.
func TestApplyDrainTimeout(t *testing.T) {
	t.Parallel()
	_, h, v1, v2, done := drainSetup(t)
	if err := applyDrain(t, h, h.Socket, v1, v2, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("the request on the removed server was not cut")
	}
}

// drainingAdapter is an adapter for h with a drain timeout of a minute,
// whose drains run in the background, as the renderer runs them.
func drainingAdapter(t *testing.T, h *haproxytest.HAProxy) (runtime.Adapter, *background) {
	t.Helper()
	bg := newBackground()
	a, err := New(runtime.Settings{Socket: h.Socket, DrainTimeout: time.Minute, Go: bg.goFn})
	if err != nil {
		t.Fatal(err)
	}
	return a, bg
}

// background runs the work an Apply leaves behind as the renderer does, and
// collects its errors.
type background struct {
	wg   sync.WaitGroup
	errs chan error
}

func newBackground() *background { return &background{errs: make(chan error, 16)} }

func (b *background) goFn(ctx context.Context, run func(context.Context) error) {
	b.wg.Go(func() {
		if err := run(ctx); err != nil {
			b.errs <- err
		}
	})
}

// wait waits until the background work is done and fails on its errors.
func (b *background) wait(t *testing.T) {
	t.Helper()
	b.wg.Wait()
	select {
	case err := <-b.errs:
		t.Fatalf("background drain: %v", err)
	default:
	}
}

// waitWithin is wait, failing if the background work is not done within d.
func (b *background) waitWithin(t *testing.T, d time.Duration) {
	t.Helper()
	ended := make(chan struct{})
	go func() { b.wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(d):
		t.Fatalf("the drain still waits after %v", d)
	}
	b.wait(t)
}

// reloadToANewWorker reloads HAProxy and waits until a new worker answers.
func reloadToANewWorker(t *testing.T, h *haproxytest.HAProxy) {
	t.Helper()
	old := h.Worker(t)
	if out, err := exec.Command("sh", "-c", h.ReloadCommand()).CombinedOutput(); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	for h.Worker(t) == old {
		time.Sleep(10 * time.Millisecond)
	}
}

// planApply plans old -> new on a, installs new and applies it.
func planApply(t *testing.T, a runtime.Adapter, h *haproxytest.HAProxy, old, new string) error {
	t.Helper()
	p, err := a.Plan([]byte(old), []byte(new))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(h.Backends, []byte(new), 0o644)
	return p.Apply(context.Background())
}

func liveState(t *testing.T, h *haproxytest.HAProxy) map[string]liveServer {
	t.Helper()
	c, _ := newCLI(h.Socket, DefaultTimeout)
	defer c.close()
	out, err := c.run(context.Background(), "show servers state api")
	if err != nil {
		t.Fatal(err)
	}
	live, err := parseState(out)
	if err != nil {
		t.Fatal(err)
	}
	return live
}

// A server that leaves is drained in the background: the Apply that
// removes it returns while its request is in flight, and the next change
// (a join) is applied and served at once, not held behind the drain. The
// drain then finishes and deletes the server.
func TestApplyJoinNotHeldBehindDrain(t *testing.T) {
	t.Parallel()
	sl, h, v1, v2, done := drainSetup(t)
	a, bg := drainingAdapter(t, h)
	if err := planApply(t, a, h, v1, v2); err != nil {
		t.Fatal(err)
	}
	if l := liveState(t, h)["s"]; !l.drain() {
		t.Fatalf("the leaving server is not draining: %+v", l)
	}
	c := newCounter(t, "c")
	v3 := v2 + srvLine("c", c, "")
	if err := planApply(t, a, h, v2, v3); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{}
	for i := 0; c.n.Load() == 0; i++ {
		if i == 10 {
			t.Fatal("the new server got no request while the old one drained")
		}
		if got := hit(t, client, h.URL()); got == "slow" {
			t.Fatal("the draining server got a new request")
		}
	}
	endDrain(t, sl, h, bg, done)
}

// A drain held open by a client looks at the sessions less and less
// often: each look reads the stats of the whole backend, and a client
// that keeps a request on a leaving server must not keep HAProxy and the
// renderer busy with those reads until the drain timeout. Before, the
// drain looked every 5 ms: about 300 looks in the 1.5 s held here.
func TestApplyDrainLooksLessOftenWhileHeld(t *testing.T) {
	t.Parallel()
	sl, h, v1, v2, done := drainSetup(t)
	a, bg := drainingAdapter(t, h)
	if err := planApply(t, a, h, v1, v2); err != nil {
		t.Fatal(err)
	}
	watch := a.(*Adapter).watch
	start := watch.exchanges.Load()
	time.Sleep(1500 * time.Millisecond) // the drain waits for the request
	if looks := watch.exchanges.Load() - start; looks > 30 {
		t.Errorf("the drain looked at the sessions %d times while one request held it; want at most 30", looks)
	}
	endDrain(t, sl, h, bg, done)
}

// A drain that starts while another is held is looked at at once, not at
// the end of a wait that grew while the other was held: here the drain
// loop's timer never fires while the test holds it, and only the new
// drain's own wake-up can have its idle server deleted.
func TestApplyNewDrainIsLookedAtAtOnce(t *testing.T) {
	t.Parallel()
	sl, h, v1, v2, done := drainSetup(t)
	a, bg := drainingAdapter(t, h)
	ad := a.(*Adapter)
	var frozen atomic.Bool
	frozen.Store(true)
	ad.after = func(d time.Duration) <-chan time.Time {
		if frozen.Load() {
			return nil
		}
		return time.After(d)
	}
	if err := planApply(t, a, h, v1, v2); err != nil { // s leaves; its request holds it
		t.Fatal(err)
	}
	other := newCounter(t, "p")
	v3 := v2 + srvLine("p", other, "")
	if err := planApply(t, a, h, v2, v3); err != nil { // p joins
		t.Fatal(err)
	}
	if err := planApply(t, a, h, v3, v2); err != nil { // p leaves, idle
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := liveState(t, h)["p"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle server's drain was not looked at: it waited for the held drain's timer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	frozen.Store(false)
	ad.kick <- struct{}{} // wake the loop from its frozen wait
	endDrain(t, sl, h, bg, done)
}

// endDrain checks that drainSetup's server s drains and is not deleted
// while its request is in flight, lets the request end, and waits for the
// background drain to delete s.
func endDrain(t *testing.T, sl *slow, h *haproxytest.HAProxy, bg *background, done <-chan error) {
	t.Helper()
	if _, ok := liveState(t, h)["s"]; !ok {
		t.Fatal("the draining server was deleted with a request in flight")
	}
	sl.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("the in-flight request failed: %v", err)
	}
	bg.wait(t)
	if _, ok := liveState(t, h)["s"]; ok {
		t.Fatal("the drained server was not deleted")
	}
}

// A server that comes back while it drains is restored, not deleted; and
// a change that Revert takes back leaves the live state the installed
// file's.
func TestApplyRejoinWhileDrainingAndRevert(t *testing.T) {
	t.Parallel()
	sl, h, v1, v2, done := drainSetup(t)
	a, bg := drainingAdapter(t, h)
	if err := planApply(t, a, h, v1, v2); err != nil {
		t.Fatal(err)
	}
	if err := planApply(t, a, h, v2, v1); err != nil {
		t.Fatalf("re-join while draining: %v", err)
	}
	sl.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("the in-flight request failed: %v", err)
	}
	bg.wait(t)
	if l, ok := liveState(t, h)["s"]; !ok || l.drain() || l.maint() {
		t.Fatalf("the server that came back is %+v (live: %t), want ready", l, ok)
	}

	// A change applied ahead of its file (a new server and a removed one),
	// then reverted: the live state is v1 again, the removed server
	// restored and the added one gone.
	c := newCounter(t, "c")
	v3 := strings.Replace(v1, fmt.Sprintf("    server s 127.0.0.1:%d\n", sl.port), "", 1) + srvLine("c", c, "")
	p, err := a.Plan([]byte(v1), []byte(v3))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Revert(context.Background()); err != nil {
		t.Fatalf("revert: %v", err)
	}
	bg.wait(t)
	live := liveState(t, h)
	if _, ok := live["c"]; ok || len(live) != 2 || live["s"].drain() || live["s"].maint() {
		t.Fatalf("after the revert the live servers are %+v, want v1's s and o, ready", live)
	}
}

// A server that moves again while its last move still drains gets a new
// stand-in; when the drains are done it is at its last address, and the
// stand-ins are gone.
func TestApplyMoveAgainWhileDraining(t *testing.T) {
	t.Parallel()
	sl, h, v1, _, done := drainSetup(t)
	a, bg := drainingAdapter(t, h)
	s2, s3 := newCounter(t, "s2"), newCounter(t, "s3")
	at := func(c *counter) string {
		return strings.Replace(v1, fmt.Sprintf("server s 127.0.0.1:%d", sl.port), fmt.Sprintf("server s 127.0.0.1:%d", c.port), 1)
	}
	if err := planApply(t, a, h, v1, at(s2)); err != nil {
		t.Fatal(err)
	}
	if err := planApply(t, a, h, at(s2), at(s3)); err != nil {
		t.Fatalf("a second move while the first drains: %v", err)
	}
	sl.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("the in-flight request failed: %v", err)
	}
	bg.wait(t)
	live := liveState(t, h)
	if l := live["s"]; len(live) != 2 || l.port != s3.port || l.drain() || l.maint() {
		t.Fatalf("after the moves the live servers are %+v, want s at %d, ready, and o", live, s3.port)
	}
}

// A drain that loses the runtime API ends with a failure once its timeout
// has passed with nothing answering (the renderer then reloads), and
// drops its drains.
func TestApplyDrainFailure(t *testing.T) {
	t.Parallel()
	_, h, v1, v2, _ := drainSetup(t)
	bg := newBackground()
	a, err := New(runtime.Settings{Socket: h.Socket, DrainTimeout: time.Second, Go: bg.goFn})
	if err != nil {
		t.Fatal(err)
	}
	if err := planApply(t, a, h, v1, v2); err != nil {
		t.Fatal(err)
	}
	// The socket goes, and with it the connection the adapter keeps.
	os.Rename(h.Socket, h.Socket+".moved")
	defer os.Rename(h.Socket+".moved", h.Socket)
	a.(*Adapter).cli.fresh()
	a.(*Adapter).watch.fresh()
	bg.wg.Wait()
	var f *runtime.Failure
	select {
	case err := <-bg.errs:
		if !errors.As(err, &f) || f.Step != "connect" {
			t.Fatalf("the drain failed with %v; want a connect failure", err)
		}
	default:
		t.Fatal("the drain that lost the runtime API did not fail")
	}
	if n := len(a.(*Adapter).drains); n != 0 {
		t.Fatalf("%d drains left after the failure", n)
	}
}

// An apply starts from the state the last one read back: one round trip
// (its commands and the read-back). When that state went stale behind the
// adapter's back (a hand-made change, a restart from the file), the
// apply finds out, reads the live state and gets there all the same.
func TestApplyFromStateReadBack(t *testing.T) {
	t.Parallel()
	a1, b, c := newCounter(t, "a"), newCounter(t, "b"), newCounter(t, "c")
	v1 := backendsFile(srvLine("a", a1, ""))
	h := haproxytest.Start(t, v1, true)
	ad, err := New(runtime.Settings{Socket: h.Socket, DrainTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cli := ad.(*Adapter).cli
	step := func(old, new string, trips int64) {
		t.Helper()
		before := cli.exchanges.Load()
		if err := planApply(t, ad, h, old, new); err != nil {
			t.Fatal(err)
		}
		if got := cli.exchanges.Load() - before; got != trips {
			t.Fatalf("the apply took %d round trips, want %d", got, trips)
		}
		live := liveState(t, h)
		cfg := parseConfig([]byte(new))
		if err := ad.(*Adapter).verify(cfg.sections[len(cfg.sections)-1], live); err != nil {
			t.Fatalf("after the apply: %v", err)
		}
	}
	v2 := backendsFile(srvLine("a", a1, ""), srvLine("b", b, ""))
	step(v1, v2, 2) // nothing read yet: read, then change
	v3 := backendsFile(srvLine("a", a1, ""), srvLine("b", b, " weight 3"))
	step(v2, v3, 1)

	// Changed by hand: HAProxy takes the commands, but the state read
	// back does not match; the change goes on from that state.
	if _, err := haproxytest.Command(h.Socket, "set weight api/a 7"); err != nil {
		t.Fatal(err)
	}
	v4 := backendsFile(srvLine("a", a1, ""), srvLine("b", b, " weight 2"))
	step(v3, v4, 2)
	step(v4, v3, 1)

	// Restarted from an older file: a command is refused (b's weight,
	// b being gone); read and redo.
	os.WriteFile(h.Backends, []byte(v1), 0o644)
	h.Stop(t)
	h.Run(t)
	v5 := backendsFile(srvLine("a", a1, ""), srvLine("b", b, ""), srvLine("c", c, ""))
	step(v3, v5, 3)

	// A server added by hand with settings of its own, which the file
	// adds: HAProxy refuses the add, and the server's settings are not
	// the file's, so the adapter gives up (and the renderer reloads)
	// rather than take it as the file's.
	d := newCounter(t, "d")
	if _, err := haproxytest.Command(h.Socket, fmt.Sprintf("add server api/d 127.0.0.1:%d maxconn 5", d.port)); err != nil {
		t.Fatal(err)
	}
	v6 := backendsFile(srvLine("a", a1, ""), srvLine("b", b, ""), srvLine("c", c, ""), srvLine("d", d, ""))
	var f *runtime.Failure
	if err := planApply(t, ad, h, v5, v6); !errors.As(err, &f) || f.Step != "verify" || !strings.Contains(err.Error(), "api/d") {
		t.Fatalf("a server added by hand that the file adds: got %v, want a verify failure naming api/d", err)
	}
}

// Many servers leaving a backend at once (a registry account's services
// deleted or timed out together) drain together: each sweep sends their
// commands, and then their deletions, in a round trip or a few (lines of
// at most 4 KB), each reading the backend's state back once, rather than
// two round trips a server, each reading the whole backend, with the lock
// that every later apply waits for held throughout.
func TestApplyManyLeavingDrainTogether(t *testing.T) {
	t.Parallel()
	const n = 300
	c := newCounter(t, "c")
	var all, kept []string
	for i := range n {
		all = append(all, srvLine(fmt.Sprintf("s%d", i), c, ""))
	}
	kept = append(kept, all[0])
	v1, v2 := backendsFile(all...), backendsFile(kept...)
	h := haproxytest.Start(t, v1, true)
	ad, err := New(runtime.Settings{Socket: h.Socket, DrainTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cli := ad.(*Adapter).cli
	before := cli.exchanges.Load()
	if err := planApply(t, ad, h, v1, v2); err != nil {
		t.Fatal(err)
	}
	// Two for the change (read, then drain), then a sweep: the drains'
	// commands, then their deletions, some lines each.
	if got := cli.exchanges.Load() - before; got > 20 {
		t.Errorf("%d servers leaving took %d round trips", n-1, got)
	}
	if live := liveState(t, h); len(live) != 1 || live["s0"] == (liveServer{}) {
		t.Errorf("after the drains, the live servers are %d, want s0 alone", len(live))
	}
}

// A drain that an Apply replaced after the drain loop looked at its
// server's sessions (a server restored, then removed again) is not taken
// a step on that look: its own wait for the sessions starts with the
// next.
func TestSweepSkipsADrainReplacedSinceTheLook(t *testing.T) {
	t.Parallel()
	looked := &drain{id: "api/s", then: []string{"set server api/s state maint"}, del: true, deadline: time.Now().Add(time.Minute)}
	now := &drain{id: "api/s", then: looked.then, del: true, deadline: time.Now().Add(time.Minute)}
	// No connection: a step would fail.
	a := &Adapter{cli: &cli{network: "unix", address: filepath.Join(t.TempDir(), "none"), timeout: time.Second},
		drains: map[string]*drain{"api/s": now}, lives: map[string]map[string]liveServer{}}
	if err := a.sweep(context.Background(), map[string]*drain{"api/s": looked}, map[string]bool{}, nil); err != nil {
		t.Fatalf("a sweep took a step on a drain replaced since its look: %v", err)
	}
	if a.drains["api/s"] != now || !now.deleting.IsZero() {
		t.Error("the replaced drain moved on")
	}
}

// A drained server whose deletion is due, in a HAProxy reloaded since
// without it: "del server" finds no such server, which is what it was
// to do, not a failure (which would reload the group).
func TestSweepDeletionOfAServerAReloadRemoved(t *testing.T) {
	t.Parallel()
	o := newCounter(t, "o")
	h := haproxytest.Start(t, backendsFile(srvLine("o", o, "")), true)
	a, err := New(runtime.Settings{Socket: h.Socket})
	if err != nil {
		t.Fatal(err)
	}
	ad := a.(*Adapter)
	d := &drain{id: "api/s", del: true, deadline: time.Now().Add(time.Minute), deleting: time.Now().Add(time.Minute)}
	ad.drains["api/s"] = d
	if err := ad.sweep(context.Background(), map[string]*drain{}, map[string]bool{}, nil); err != nil {
		t.Fatalf("the deletion of a server HAProxy does not have failed: %v", err)
	}
	if len(ad.drains) != 0 {
		t.Errorf("drains left: %v", ad.drains)
	}
}

// HAProxy skips the lines of a false .if block: a server line in one is
// not a server of the backend, and the runtime API must not add it.
func TestApplyServerInFalseConditionalBlock(t *testing.T) {
	t.Parallel()
	a, c := newCounter(t, "a"), newCounter(t, "c")
	v1 := backendsFile(srvLine("a", a, ""), ".if defined(SVCREG_NOT_SET)\n", ".endif\n")
	h := haproxytest.Start(t, v1, true)
	v2 := backendsFile(srvLine("a", a, ""), ".if defined(SVCREG_NOT_SET)\n", srvLine("c", c, ""), ".endif\n")
	ad, err := New(runtime.Settings{Socket: h.Socket})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ad.Plan([]byte(v1), []byte(v2))
	if err != nil {
		t.Log(err)
		return
	}
	if err := p.Apply(t.Context()); err != nil {
		t.Log(err)
		return
	}
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		seen[hit(t, &http.Client{}, h.URL())]++
	}
	if seen["c"] > 0 {
		t.Fatalf("requests went to %v: c, in a false .if block, was added", seen)
	}
}

// A section that starts inside a conditional block may not be loaded at
// all, or be one of two of the same name: its servers are not changed at
// runtime either.
//
// The changed section holds no conditional line of its own in the second
// case: the block opens before it and closes in the section after it, so
// only its place inside the block says it may not be loaded.
func TestPlanSectionInConditionalBlock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, old, from, to string }{
		{"one of two of the same name",
			"backend x\n    balance roundrobin\n.if defined(A)\nbackend api\n    balance roundrobin\n    server a 127.0.0.1:8001\n.else\nbackend api\n    balance roundrobin\n    server a 127.0.0.1:8002\n.endif\n",
			":8002", ":8003"},
		{"wholly inside the block",
			"backend x\n    balance roundrobin\n.if defined(A)\nbackend api\n    balance roundrobin\n    server a 127.0.0.1:8001\nbackend y\n    balance roundrobin\n.endif\n",
			":8001", ":8003"},
	} {
		next := strings.Replace(tc.old, tc.from, tc.to, 1)
		if p, err := planOf(t, tc.old, next); err == nil {
			t.Errorf("%s: want a reload, got %q", tc.name, p.Commands())
		}
	}
}

// An installed server line the adapter could not read (a host name, a
// quote or '$' anywhere on it, its comment included) hides its settings:
// the new line may drop one of them ("backup", "send-proxy", "ssl"), which
// the runtime API would leave on the live server.
func TestPlanInstalledServerLineUnreadable(t *testing.T) {
	t.Parallel()
	head := "backend api\n    balance roundrobin\n    server a 127.0.0.1:8001\n"
	for _, old := range []string{
		"    server b localhost:8002 send-proxy backup\n",
		"    server b 127.0.0.1:8002 backup # the owner's box\n",
		"    server b 127.0.0.1:8002 ssl verify none sni str(x\\ y)\n",
		"    server b 127.0.0.1:8002 backup # costs $5\n",
	} {
		for _, next := range []string{"    server b 127.0.0.1:9002\n", "    server b 127.0.0.1:8002 weight 3\n"} {
			p, err := planOf(t, head+old, head+next)
			var nr *runtime.NeedsReload
			if !errors.As(err, &nr) {
				t.Errorf("%q -> %q: want a reload, got %v", old, next, p.Commands())
			}
		}
	}
}

// Against the real HAProxy: the backup server of an unreadable line that
// the new file makes a plain server takes requests once the change is
// applied, as it does after a reload of the file.
func TestApplyInstalledServerLineUnreadable(t *testing.T) {
	t.Parallel()
	a, b, b2 := newCounter(t, "a"), newCounter(t, "b"), newCounter(t, "b2")
	v1 := backendsFile(srvLine("a", a, ""), srvLine("b", b, " backup # the owner's box"))
	h := haproxytest.Start(t, v1, true)
	v2 := backendsFile(srvLine("a", a, ""), srvLine("b", b2, ""))
	ad, err := New(runtime.Settings{Socket: h.Socket})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ad.Plan([]byte(v1), []byte(v2))
	if err != nil {
		return // reloaded: HAProxy loads v2 as it is
	}
	if err := p.Apply(t.Context()); err != nil {
		return // failed: the renderer reloads
	}
	client := &http.Client{}
	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		seen[hit(t, client, h.URL())]++
	}
	if seen["b2"] == 0 {
		t.Fatalf("the file has b at b2's address as a plain server, but after the runtime change requests went to %v (b is still a backup server)", seen)
	}
}

// A server whose drain is under way comes back: the line it was loaded
// from, which the drain keeps, could not be read, so its live settings are
// unknown and the adapter does not make it ready again with them.
func TestScriptDrainedServerLineUnreadable(t *testing.T) {
	t.Parallel()
	installed := parseConfig([]byte("backend api\n    balance roundrobin\n    server b 127.0.0.1:8002 backup # the owner's box\n"))
	next := parseConfig([]byte("backend api\n    balance roundrobin\n    server b 127.0.0.1:8002\n"))
	cur := next.backend("api")
	live := map[string]liveServer{"b": {name: "b", addr: netip.MustParseAddr("127.0.0.1"), port: 8002, weight: 1, admin: adminForcedDrain}}
	pending := map[string]*drain{"api/b": {id: "api/b", server: installed.backend("api").server("b"), then: []string{"set server api/b state maint"}, del: true}}
	sc, err := script([]*section{cur}, knownIn(parseConfig([]byte("backend api\n    balance roundrobin\n"))), []map[string]liveServer{live}, pending)
	if err == nil {
		t.Fatalf("want an error, got commands %q", sc.cmds)
	}
}

// HAProxy loads a "disabled" server with two admin flags: forced
// maintenance (0x01) and configured maintenance (0x04). "set server state
// ready" clears the first; the second stays, and is no maintenance
// (SRV_ADMF_MAINT is 0x23): the server takes requests.
func TestApplyEnableServerDisabledInTheFile(t *testing.T) {
	t.Parallel()
	a, c := newCounter(t, "a"), newCounter(t, "c")
	v1 := backendsFile(srvLine("a", a, ""), srvLine("c", c, " disabled"))
	h := haproxytest.Start(t, v1, true)
	worker := h.Worker(t)
	v2 := backendsFile(srvLine("a", a, ""), srvLine("c", c, ""))
	if err := apply(t, h, h.Socket, v1, v2); err != nil {
		t.Fatalf("enabling a server the installed file disables: %v", err)
	}
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		seen[hit(t, &http.Client{}, h.URL())]++
	}
	if seen["c"] == 0 {
		t.Fatalf("requests went to %v", seen)
	}
	if got := h.Worker(t); got != worker {
		t.Fatal("HAProxy was reloaded")
	}
}

// A server the file disables, made ready by hand, takes requests: the
// reconcile at start puts it back in maintenance.
func TestReconcileServerDisabledInTheFileMadeReady(t *testing.T) {
	t.Parallel()
	a, c := newCounter(t, "a"), newCounter(t, "c")
	v1 := backendsFile(srvLine("a", a, ""), srvLine("c", c, " disabled"))
	h := haproxytest.Start(t, v1, true)
	if out, err := haproxytest.Command(h.Socket, "set server api/c state ready"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("%q %v", out, err)
	}
	ad, err := New(runtime.Settings{Socket: h.Socket})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := ad.(runtime.Reconciler).Reconcile(context.Background(), []byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"set server api/c state maint"}; !slices.Equal(sent, want) {
		t.Errorf("sent %q, want %q", sent, want)
	}
	for i := 0; i < 10; i++ {
		if got := hit(t, &http.Client{}, h.URL()); got != "a" {
			t.Fatalf("the disabled server %s got a request", got)
		}
	}
}

// What Commands shows (--dry) takes a server the installed file disables
// for one HAProxy loaded in maintenance, as Apply finds it live: a change
// of another server sends nothing for it.
func TestCommandsServerDisabledInTheFile(t *testing.T) {
	t.Parallel()
	head := "backend api\n    balance roundrobin\n"
	old := head + "    server a 127.0.0.1:8001\n    server c 127.0.0.1:8003 disabled\n"
	next := head + "    server a 127.0.0.1:8001 weight 3\n    server c 127.0.0.1:8003 disabled\n"
	p, err := planOf(t, old, next)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Commands(), []string{"set weight api/a 3"}; !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
}

// A backend that takes a default-server line from a named defaults section
// ("from") is not changed at runtime: HAProxy would add the server without
// that line's settings (here TLS), and the read-back would not see it.
func TestApplyDefaultServerThroughFrom(t *testing.T) {
	t.Parallel()
	a, b := newCounter(t, "a"), newCounter(t, "b")
	pre := "defaults tuned\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    default-server ssl verify none\n" +
		"defaults plain\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n" +
		"backend api from tuned\n    balance roundrobin\n"
	v1 := pre + srvLine("a", a, "")
	v2 := v1 + srvLine("b", b, "")
	h := haproxytest.Start(t, v1, true)
	tls, planned, err := runtimeTLS(t, h, h.Socket, v1, v2)
	if !planned {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for name, on := range tls {
		if on != "1" {
			t.Fatalf("server %s was added without TLS, which the file gives it through default-server", name)
		}
	}
}

// runtimeTLS plans old -> new for h through socket (its stats socket or
// its master's) and applies it, and says which of backend api's servers
// then use TLS (srv_use_ssl, by name). planned is false if the change
// needs a reload; err is Apply's.
func runtimeTLS(t *testing.T, h *haproxytest.HAProxy, socket, old, new string) (tls map[string]string, planned bool, err error) {
	t.Helper()
	ad, err := New(runtime.Settings{Socket: socket})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ad.Plan([]byte(old), []byte(new))
	var nr *runtime.NeedsReload
	if errors.As(err, &nr) {
		return nil, false, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(context.Background()); err != nil {
		return nil, true, err
	}
	out, err := haproxytest.Command(h.Socket, "show servers state api")
	if err != nil {
		t.Fatal(err)
	}
	col, rows, err := stateRows(out, "srv_name", "srv_use_ssl")
	if err != nil {
		t.Fatal(err)
	}
	tls = map[string]string{}
	for _, f := range rows {
		tls[f[col["srv_name"]]] = f[col["srv_use_ssl"]]
	}
	return tls, true, nil
}

// HAProxy's CLI reads at most 64 words of a command and drops the rest
// without a word; its configuration takes a server line of 64 words, one
// fewer than "add server BACKEND/NAME" makes of it. Such a line is not
// added at runtime: its last setting (here TLS) would be lost.
func TestApplyServerLineOfSixtyFourWords(t *testing.T) {
	t.Parallel()
	for _, socket := range []string{"stats", "master"} {
		t.Run(socket, func(t *testing.T) {
			t.Parallel()
			a, b := newCounter(t, "a"), newCounter(t, "b")
			v1 := backendsFile(srvLine("a", a, ""))
			long := strings.Repeat(" maxconn 50", 29) + " verify none ssl"
			if n := len(strings.Fields(srvLine("b", b, long))); n != 64 {
				t.Fatalf("the line has %d words", n)
			}
			v2 := v1 + srvLine("b", b, long)
			h := haproxytest.Start(t, v1, true)
			addr := h.Socket
			if socket == "master" {
				addr = "master:" + h.Master
			}
			tls, planned, err := runtimeTLS(t, h, addr, v1, v2)
			if !planned || err != nil {
				return // refused, and reloaded
			}
			if tls["b"] != "1" {
				t.Fatalf("server b was added without the TLS its line gives it")
			}
		})
	}
}

// HAProxy ends a line at a carriage return after its first word (one
// before it is white space); the words after it are not the server's. A
// server added at runtime has what HAProxy loads from the same file.
func TestApplyCarriageReturnEndsTheLine(t *testing.T) {
	t.Parallel()
	a, b := newCounter(t, "a"), newCounter(t, "b")
	v1 := backendsFile(srvLine("a", a, ""))
	for _, extra := range []string{" maxconn 3\r ssl verify none", " maxconn 3 \r backup"} {
		v2 := v1 + srvLine("b", b, extra)
		// What HAProxy loads from v2.
		loaded := haproxytest.Start(t, v2, true)
		want := serverState(t, loaded.Socket, "b")
		// What the adapter makes of v1 -> v2.
		h := haproxytest.Start(t, v1, true)
		if err := apply(t, h, h.Socket, v1, v2); err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		if got := serverState(t, h.Socket, "b"); got != want {
			t.Fatalf("%q: server b added at runtime is %s; loaded from the file, %s", extra, got, want)
		}
	}
}

// serverState is what HAProxy says of server name of backend api: its TLS
// ("show servers state", srv_use_ssl) and whether it is a backup ("show
// stat", bck).
func serverState(t *testing.T, socket, name string) string {
	t.Helper()
	out, err := haproxytest.Command(socket, "show servers state api")
	if err != nil {
		t.Fatal(err)
	}
	col, rows, err := stateRows(out, "srv_name", "srv_use_ssl")
	if err != nil {
		t.Fatal(err)
	}
	stat, err := haproxytest.Command(socket, "show stat")
	if err != nil {
		t.Fatal(err)
	}
	backup := "?"
	lines := strings.Split(stat, "\n")
	head := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
	bck := slices.Index(head, "bck")
	for _, l := range lines[1:] {
		if f := strings.Split(l, ","); len(f) > bck && f[0] == "api" && f[1] == name {
			backup = f[bck]
		}
	}
	for _, f := range rows {
		if f[col["srv_name"]] == name {
			return "ssl=" + f[col["srv_use_ssl"]] + " backup=" + backup
		}
	}
	return "missing"
}
