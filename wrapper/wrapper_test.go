package wrapper_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/svcreg/svcreg/internal/testnet"
	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// untilStop is a command that writes its pid to $1/pid and runs until the
// file $1/stop exists.
const untilStop = `echo $$ > "$1/pid"
while [ ! -e "$1/stop" ]; do sleep 0.05; done
`

// sh returns the arguments that run script with sh, $1 being dir.
func sh(script, dir string) []string {
	return []string{"--", "sh", "-c", script, "command", dir}
}

func TestServiceLivesWithTheCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	script := `read line; echo "$SVCREG_SERVICE_ID $WRAPPER_TEST_VAR $line" > "$1/env"
` + untilStop + `echo to-stdout
echo to-stderr >&2
`
	// --interval=2: a 6 s heartbeat timeout, which a heartbeat held up on
	// a loaded machine does not pass, so that no timeout joins the events.
	args := append([]string{"--id=web1", "--tags=www, api", "--metadata=ip=10.0.0.1,port=8080", "--metadata", "url=http://h/?a=b",
		"--interval=2", "--log-format=json"}, sh(script, f.dir)...)
	w := startWrapperStdin(t, f.dir, strings.NewReader("from-stdin\n"), f.env("WRAPPER_TEST_VAR=passed"), args...)

	s := f.waitRegistered("web1")
	if want := []string{"www", "api"}; !reflect.DeepEqual(s.Tags, want) {
		t.Errorf("tags = %q, want %q", s.Tags, want)
	}
	if want := map[string]string{"ip": "10.0.0.1", "port": "8080", "url": "http://h/?a=b"}; !reflect.DeepEqual(s.Metadata, want) {
		t.Errorf("metadata = %q, want %q", s.Metadata, want)
	}
	if s.HeartbeatTimeout != 6 {
		t.Errorf("heartbeat_timeout = %d, want 6 (3 × --interval=2)", s.HeartbeatTimeout)
	}
	if got, want := waitFile(t, f.path("env")), "web1 passed from-stdin"; got != want {
		t.Errorf("the command's $SVCREG_SERVICE_ID, $WRAPPER_TEST_VAR and stdin = %q, want %q", got, want)
	}
	f.waitHeartbeat("web1")

	touch(t, f.path("stop"))
	if code := w.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	f.assertGone("web1")
	if got, want := f.eventTypes("web1"), []registry.EventType{registry.ServiceJoin, registry.ServiceRemove}; !reflect.DeepEqual(got, want) {
		t.Errorf("events for web1 = %v, want %v (deleted at once, not timed out)", got, want)
	}

	if got := w.output(); got != "to-stdout\n" {
		t.Errorf("stdout = %q, want the command's %q", got, "to-stdout\n")
	}
	var records int
	sc := bufio.NewScanner(strings.NewReader(w.logs()))
	sawChild := false
	for sc.Scan() {
		line := sc.Text()
		if line == "to-stderr" {
			sawChild = true
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line is neither the command's nor a JSON log record: %q", line)
			continue
		}
		records++
		if rec["prog"] != "service-registry-wrapper" || rec["service"] != "web1" {
			t.Errorf("log record without prog=service-registry-wrapper service=web1: %q", line)
		}
	}
	if !sawChild || records == 0 {
		t.Errorf("stderr holds %d log records and the command's line: %v", records, sawChild)
	}
}

func TestExitCodePassesThrough(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name   string
		script string
		want   int
	}{
		{"exit 0", "exit 0", 0},
		{"exit 3", "exit 3", 3},
		{"killed by SIGTERM", "kill -TERM $$", 128 + 15},
		{"killed by SIGKILL", "kill -KILL $$", 128 + 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := "svc-" + strconv.Itoa(tc.want)
			w := startWrapper(t, f.dir, f.env(), append([]string{"--id", id, "--interval", "1"}, sh(tc.script, f.dir)...)...)
			if code := w.wait(); code != tc.want {
				t.Errorf("exit code %d, want %d", code, tc.want)
			}
			f.assertGone(id)
		})
	}
}

// inheritedIgnored reports whether this process ignores sig (SigIgn in
// /proc/self/status: one inherited as ignored, which Go leaves so).
func inheritedIgnored(t *testing.T, sig syscall.Signal) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false // not Linux: nothing to tell
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("SigIgn %q: %v", v, err)
			}
			return mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

func TestSignalsReachTheCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	signals := []struct {
		sig  syscall.Signal
		name string
	}{
		{syscall.SIGHUP, "HUP"}, {syscall.SIGUSR1, "USR1"}, {syscall.SIGUSR2, "USR2"}, {syscall.SIGQUIT, "QUIT"},
		{syscall.SIGINT, "INT"}, {syscall.SIGWINCH, "WINCH"}, {syscall.SIGALRM, "ALRM"}, {syscall.Signal(40), "40"},
	}
	for _, s := range signals {
		if inheritedIgnored(t, s.sig) {
			// Started under nohup (SIGHUP) or as "&" in a script (SIGINT,
			// SIGQUIT): the wrapper keeps such a signal ignored for the
			// command, as the README says.
			msg := fmt.Sprintf("the tests were started with SIG%s ignored, which the wrapper keeps ignored for the command", s.name)
			testprog.SkipOrFail(t, msg, "")
		}
	}
	var script strings.Builder
	for _, s := range signals {
		script.WriteString(`trap 'echo ` + s.name + ` >> "$1/signals"' ` + s.name + "\n")
	}
	script.WriteString(`trap 'echo TERM >> "$1/signals"; exit 7' TERM
echo $$ > "$1/pid"
while :; do sleep 0.05; done
`)
	// A grace period longer than the test: the SIGTERM after the SIGINT
	// must be passed on, not turned into SIGKILL.
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=sig1", "--interval=1", "--grace-period=10m"}, sh(script.String(), f.dir)...)...)
	f.waitRegistered("sig1")
	waitFile(t, f.path("pid"))
	var got string
	for _, s := range signals {
		w.signal(s.sig)
		waitFor(t, "the command to get SIG"+s.name, func() bool {
			b, _ := os.ReadFile(f.path("signals"))
			got = string(b)
			return strings.HasSuffix(got, s.name+"\n")
		})
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(); code != 7 {
		t.Errorf("exit code %d, want 7 (the command's, after its TERM trap)", code)
	}
	b, _ := os.ReadFile(f.path("signals"))
	var want strings.Builder
	for _, s := range signals {
		want.WriteString(s.name + "\n")
	}
	want.WriteString("TERM\n")
	if string(b) != want.String() {
		t.Errorf("signals the command got:\n%s\nwant each once, in order:\n%s", b, want.String())
	}
	f.assertGone("sig1")
}

// A terminal sends Ctrl-C and a new window size to its foreground process
// group: the shell's job, the wrapper and its command. The command gets
// each once, from the terminal; the wrapper does not pass it on a second
// time. SIGQUIT sent to the wrapper is passed on, a terminal's or not (a
// container's stop signal, as often).
func TestTerminalSignalsReachTheCommandOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w, terminal := startWrapperOnTerminal(t, f.dir, f.env(), "--id=tty1", "--interval=1", "--grace-period=10m", "--", os.Args[0], recordSignalsArg, f.dir)
	f.waitRegistered("tty1")
	waitFile(t, f.path("pid"))
	var want strings.Builder
	// Each signal from the terminal is followed, once the command has it,
	// by a SIGUSR1 to the wrapper alone, passed on after it: once the
	// command has that too, it has had all it will get of the one before.
	var got func(name string)
	got = func(name string) {
		t.Helper()
		want.WriteString(name + "\n")
		waitFor(t, "the command to get SIG"+name, func() bool {
			b, _ := os.ReadFile(f.path("signals"))
			return strings.Count(string(b), "\n") >= strings.Count(want.String(), "\n")
		})
		if name != "USR1" {
			w.signal(syscall.SIGUSR1)
			got("USR1")
		}
	}
	if _, err := terminal.WriteString("\x03"); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	got("INT")
	w.signal(syscall.SIGQUIT)
	got("QUIT")
	if err := unix.IoctlSetWinsize(int(terminal.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 100}); err != nil {
		t.Fatal(err)
	}
	got("WINCH")

	touch(t, f.path("stop"))
	if code := w.wait(); code != 0 {
		t.Errorf("exit code %d, want the command's 0", code)
	}
	if b, _ := os.ReadFile(f.path("signals")); string(b) != want.String() {
		t.Errorf("signals the command got:\n%s\nwant each once:\n%s", b, want.String())
	}
	f.assertGone("tty1")
}

func TestSecondSignalAfterGracePeriodKills(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stubborn := `trap 'echo TERM >> "$1/signals"' TERM
` + untilStop

	t.Run("after the grace period", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		w := startWrapper(t, dir, f.env(), append([]string{"--id=stubborn1", "--interval=1", "--grace-period=200ms"}, sh(stubborn, dir)...)...)
		f.waitRegistered("stubborn1")
		pid, _ := strconv.Atoi(waitFile(t, dir+"/pid"))
		w.signal(syscall.SIGTERM)
		waitFile(t, dir+"/signals")
		// A SIGTERM kills the command from a grace period after the first
		// until twice that; one the wrapper takes later (a loaded machine
		// held the test or the wrapper up) is a first again, passed on,
		// and the next is the second: send SIGTERMs until one kills.
		for passed := 1; ; passed++ {
			if passed > 10 {
				t.Fatalf("%d SIGTERMs, each past the grace period, passed on and none killed the command:\n%s", passed, w.logs())
			}
			time.Sleep(300 * time.Millisecond) // past the grace period
			w.signal(syscall.SIGTERM)
			var killed bool
			waitFor(t, "the wrapper to kill the command or pass the SIGTERM on", func() bool {
				logs := w.logs()
				killed = strings.Contains(logs, "another signal after the grace period; killing the command")
				return killed || strings.Count(logs, "passing a signal on to the command") > passed
			})
			if killed {
				break
			}
			t.Logf("SIGTERM %d came more than twice the grace period after the one before: passed on as a first; sending another", passed+1)
		}
		if code := w.wait(); code != 128+9 {
			t.Errorf("exit code %d, want %d (the command killed with SIGKILL)", code, 128+9)
		}
		if alive(pid) {
			t.Errorf("the command (pid %d) is still running", pid)
		}
		f.assertGone("stubborn1")
	})
	t.Run("within the grace period", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		w := startWrapper(t, dir, f.env(), append([]string{"--id=stubborn2", "--interval=1", "--grace-period=10m"}, sh(stubborn, dir)...)...)
		f.waitRegistered("stubborn2")
		waitFile(t, dir+"/pid")
		w.signal(syscall.SIGTERM)
		waitFile(t, dir+"/signals")
		w.signal(syscall.SIGTERM)
		waitFor(t, "the second SIGTERM to reach the command", func() bool {
			b, _ := os.ReadFile(dir + "/signals")
			return string(b) == "TERM\nTERM\n"
		})
		touch(t, dir+"/stop")
		if code := w.wait(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
}

func TestOrphansAreReaped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Each subshell starts a background process and exits at once: the
	// background process is orphaned and re-parented to the wrapper. The
	// last one runs until the test releases it.
	script := `for i in 1 2 3 4 5; do ( sleep 0.1 & ) ; done
( while [ ! -e "$1/release" ]; do sleep 0.05; done & echo $! > "$1/orphan" )
echo $$ > "$1/pid"
while [ ! -e "$1/stop" ]; do sleep 0.05; done
exit 5
`
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=reaper", "--interval=1"}, sh(script, f.dir)...)...)
	orphan := waitFile(t, f.path("orphan"))
	waitFile(t, f.path("pid"))
	wrapperPID := strconv.Itoa(w.pid())
	orphanPID, err := strconv.Atoi(orphan)
	if err != nil {
		t.Fatal(err)
	}
	if _, p := procStateParent(orphanPID); p != wrapperPID {
		t.Errorf("the orphan's parent is %s, want the wrapper %s (a child subreaper)", p, wrapperPID)
	}
	touch(t, f.path("release"))
	// Once reaped, a process leaves /proc; a zombie stays there.
	waitFor(t, "the orphan to be reaped", func() bool {
		_, err := os.Stat("/proc/" + orphan)
		return os.IsNotExist(err)
	})
	waitFor(t, "no zombie children of the wrapper", func() bool { return len(zombieChildren(t, w.pid())) == 0 })

	touch(t, f.path("stop"))
	if code := w.wait(); code != 5 {
		t.Errorf("exit code %d, want the command's 5", code)
	}
	f.assertGone("reaper")
}

func TestRegistryOutageKeepsTheCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=outage", "--interval=1"}, sh(untilStop, f.dir)...)...)
	f.waitRegistered("outage")
	pid, _ := strconv.Atoi(waitFile(t, f.path("pid")))

	f.srv.Stop()
	time.Sleep(4 * time.Second) // longer than the heartbeat timeout (3 s)
	if !w.running() || !alive(pid) {
		t.Fatalf("with the registry down: wrapper running %v, command running %v; want both", w.running(), alive(pid))
	}
	restarted := time.Now()
	f.srv.Restart()
	waitFor(t, "heartbeats after the restart", func() bool {
		s, err := f.service("outage")
		return err == nil && s.LastSeen.After(restarted)
	})
	if !w.running() || !alive(pid) {
		t.Fatalf("after the restart: wrapper running %v, command (pid %d) running %v; want both", w.running(), pid, alive(pid))
	}
	f.stopCleanly(w, "outage")
}

// TestFailsOverToTheNextURL: given the URLs of several registry nodes,
// the wrapper registers and heartbeats at the next when the first is down,
// and says so in one log line.
func TestFailsOverToTheNextURL(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const dead = "http://127.0.0.1:1" // nothing listens: refused
	env := append(f.env(), "SVCREG_URL="+dead+","+f.srv.APIURL)
	w := startWrapper(t, f.dir, env, append([]string{"--id=failover", "--interval=1"}, sh(untilStop, f.dir)...)...)
	f.waitRegistered("failover")
	f.waitHeartbeat("failover")
	f.stopCleanly(w, "failover")
	if n := strings.Count(w.logs(), "registry "+dead+" failed"); n != 1 || !strings.Contains(w.logs(), "; using "+f.srv.APIURL) {
		t.Errorf("the wrapper's log says %d times that the registry at %s failed; want once, and that it uses %s:\n%s", n, dead, f.srv.APIURL, w.logs())
	}
}

// TestRegistrationWaitsOutRetryAfter: a create refused by the registry's
// write limit is sent again after the answer's Retry-After (whole seconds),
// not at the backoff's first 250 ms.
func TestRegistrationWaitsOutRetryAfter(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var creates []time.Time // of the wrapper's service
	f := newFixtureWith(t, testserver.Options{WriteRate: 0.5, WriteBurst: 1, Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/services") && r.UserAgent() != "other" {
				mu.Lock()
				creates = append(creates, time.Now())
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	}})
	// Another client of the account spends the burst.
	other, err := registry.New(registry.Config{URL: f.srv.APIURL, AuthURL: f.srv.AuthURL, Username: f.user, APIKey: "dev", UserAgent: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.CreateService(t.Context(), registry.Service{ID: "other", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=limited", "--interval=3"}, sh(untilStop, f.dir)...)...)
	f.waitRegistered("limited")
	mu.Lock()
	got := slices.Clone(creates)
	mu.Unlock()
	if len(got) < 2 {
		t.Fatalf("%d creates; want one refused by the write limit, then the one that registered", len(got))
	}
	for i := 1; i < len(got); i++ {
		if d := got[i].Sub(got[i-1]); d < time.Second {
			t.Errorf("create %d sent %v after the refused one, before its Retry-After", i+1, d)
		}
	}
	touch(t, f.path("stop"))
	if code := w.wait(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestRegistersAgainWhenForgotten(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// --interval=2 (a 6 s timeout): no timeout of a heartbeat held up on a
	// loaded machine among the events.
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=forgotten", "--interval=2"}, sh(untilStop, f.dir)...)...)
	f.waitRegistered("forgotten")
	if err := f.client.DeleteService(t.Context(), "forgotten"); err != nil {
		t.Fatal(err)
	}
	w.waitLog("registering it again")
	f.waitRegistered("forgotten")
	if got, want := f.eventTypes("forgotten"), []registry.EventType{registry.ServiceJoin, registry.ServiceRemove, registry.ServiceJoin}; !reflect.DeepEqual(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	f.stopCleanly(w, "forgotten")
}

func TestWaitsForAnOldInstanceToTimeOut(t *testing.T) {
	t.Parallel()
	clock := new(testserver.Clock)
	f := newFixtureWith(t, testserver.Options{Clock: clock})
	// An old instance that died without deleting its service: nobody
	// heartbeats it, so the registry times it out when the test moves its
	// clock past the deadline; not before the wrapper has found the id
	// taken, however slowly the wrapper starts.
	if _, err := f.client.CreateService(t.Context(), registry.Service{ID: "restarted", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	script := `echo started > "$1/started"
` + untilStop
	// --interval=2 (a 6 s timeout): no timeout of the new instance among
	// the events, should a loaded machine hold a heartbeat up.
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=restarted", "--interval=2", "--tags=new"}, sh(script, f.dir)...)...)
	w.waitLog("another instance holds the id")
	if _, err := os.Stat(f.path("started")); err == nil {
		t.Error("the command started while the old instance held the id")
	}
	clock.Advance(121 * time.Second)
	waitFile(t, f.path("started"))
	// The command starts once the wrapper holds the id.
	got := f.eventTypes("restarted")
	if want := []registry.EventType{registry.ServiceJoin, registry.ServiceTimeout, registry.ServiceJoin}; !reflect.DeepEqual(got, want) {
		t.Errorf("events when the command started = %v, want %v", got, want)
	}
	if s := f.waitRegistered("restarted"); !s.HasTag("new") {
		t.Errorf("the registry holds %+v, not the new instance", s)
	}
	f.stopCleanly(w, "restarted")
}

func TestSignalWhileWaitingForAnOldInstance(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.client.CreateService(t.Context(), registry.Service{ID: "held", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=held", "--interval=1"}, sh(untilStop, f.dir)...)...)
	w.waitLog("registering the service")
	w.signal(syscall.SIGTERM)
	if code := w.wait(); code != 128+15 {
		t.Errorf("exit code %d, want %d", code, 128+15)
	}
	if _, err := os.Stat(f.path("pid")); err == nil {
		t.Error("the command started while another instance held the id")
	}
	if _, err := f.service("held"); err != nil {
		t.Errorf("the old instance's service: %v; the wrapper must not delete what it does not hold", err)
	}
}

func TestStartsTheCommandWhileTheRegistryIsDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.srv.Stop()
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=failopen", "--interval=1"}, sh(untilStop, f.dir)...)...)
	waitFile(t, f.path("pid"))
	w.waitLog("cannot register the service")
	f.srv.Restart()
	f.waitRegistered("failopen")
	// The wrapper knows once the answer is in, a moment after the registry
	// has the service: a command exiting in between leaves the service to
	// time out (its registration's outcome is unknown to the wrapper).
	w.waitLog("service registered")
	f.stopCleanly(w, "failopen")
}

// closedURL is an API URL on which nothing listens.
func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/v1.0"
}

func TestAbortOnFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	graceful := `trap 'echo TERM > "$1/term"; exit 0' TERM
echo $$ > "$1/pid"
while :; do sleep 0.05; done
`
	t.Run("no registry", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		env := []string{"SVCREG_URL=" + closedURL(t), "SVCREG_USERNAME=nobody", "SVCREG_API_KEY=dev"}
		w := startWrapper(t, dir, env, append([]string{"--id=abort1", "--interval=1", "--abort-on-failure"}, sh(graceful, dir)...)...)
		pid, _ := strconv.Atoi(waitFile(t, dir+"/pid"))
		if code := w.wait(); code != 69 {
			t.Errorf("exit code %d, want 69", code)
		}
		if _, err := os.Stat(dir + "/term"); err != nil {
			t.Errorf("the command did not get SIGTERM: %v", err)
		}
		if alive(pid) {
			t.Errorf("the command (pid %d) is still running", pid)
		}
		if !strings.Contains(w.logs(), "aborting (--abort-on-failure)") {
			t.Errorf("no abort message in the logs:\n%s", w.logs())
		}
	})
	t.Run("heartbeats fail past the timeout", func(t *testing.T) {
		t.Parallel()
		g := newFixture(t)
		dir := t.TempDir()
		// The command ignores SIGTERM: it is killed after the grace period.
		stubborn := `trap '' TERM
echo $$ > "$1/pid"
while :; do sleep 0.05; done
`
		w := startWrapper(t, dir, g.env(), append([]string{"--id=abort2", "--interval=1", "--abort-on-failure", "--grace-period=300ms"}, sh(stubborn, dir)...)...)
		g.waitRegistered("abort2")
		pid, _ := strconv.Atoi(waitFile(t, dir+"/pid"))
		g.srv.Stop()
		if code := w.wait(); code != 69 {
			t.Errorf("exit code %d, want 69", code)
		}
		if alive(pid) {
			t.Errorf("the command (pid %d) is still running", pid)
		}
		for _, want := range []string{"no registration or heartbeat", "killing it"} {
			if !strings.Contains(w.logs(), want) {
				t.Errorf("logs lack %q:\n%s", want, w.logs())
			}
		}
	})
	// After the start, a refusal is waited out like any failure: the
	// registry forgets the service (a heartbeat answered 404) and refuses
	// it again (limitReached); the wrapper retries, and gives up once a
	// heartbeat timeout has passed without success, not at the refusal.
	t.Run("refused after the start", func(t *testing.T) {
		t.Parallel()
		g := newFixture(t)
		dir := t.TempDir()
		var forget atomic.Bool
		env := g.proxied(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, _ *url.URL) {
			if forget.Load() {
				switch {
				case strings.HasSuffix(r.URL.Path, "/heartbeat"):
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusNotFound)
					io.WriteString(w, `{"type":"notFoundError","code":404,"message":"Object does not exist"}`)
					return
				case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/services"):
					refuseLimit(w, r, rp)
					return
				}
			}
			rp.ServeHTTP(w, r)
		})
		w := startWrapper(t, dir, env, append([]string{"--id=abort4", "--interval=1", "--abort-on-failure"}, sh(graceful, dir)...)...)
		g.waitHeartbeat("abort4")
		waitFile(t, dir+"/pid")
		forget.Store(true)
		if code := w.wait(); code != 69 {
			t.Errorf("exit code %d, want 69", code)
		}
		logs := w.logs()
		refused, gaveUp := strings.Index(logs, "the registry refused the service; retrying"), strings.Index(logs, "no registration or heartbeat")
		if refused < 0 || gaveUp < refused {
			t.Errorf("want the refusal retried, then the abort once the timeout passed; logs:\n%s", logs)
		}
	})
	t.Run("refused credentials", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		env := []string{"SVCREG_URL=" + f.srv.APIURL, "SVCREG_USERNAME=" + f.user, "SVCREG_API_KEY=wrong"}
		w := startWrapper(t, dir, env, append([]string{"--id=abort3", "--interval=1", "--abort-on-failure"}, sh(graceful, dir)...)...)
		if code := w.wait(); code != 69 {
			t.Errorf("exit code %d, want 69", code)
		}
		if _, err := os.Stat(dir + "/pid"); err == nil {
			t.Errorf("the command ran although the registry refused the service")
		}
		if !strings.Contains(w.logs(), "the command was not started") {
			t.Errorf("no clear message in the logs:\n%s", w.logs())
		}
	})
}

// A registry served over HTTPS with a private CA's certificate: the
// wrapper trusts it with --ca-cert or $SVCREG_CA_CERT, and says why it
// cannot register without.
func TestCACert(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, testserver.Options{TLS: true})
	for _, tc := range []struct {
		id   string
		env  []string
		args []string
	}{
		{"tls-flag", nil, []string{"--ca-cert", f.srv.CACert}},
		{"tls-env", []string{"SVCREG_CA_CERT=" + f.srv.CACert}, nil},
	} {
		dir := t.TempDir()
		w := startWrapper(t, dir, f.env(tc.env...), append(append([]string{"--id=" + tc.id, "--interval=1"}, tc.args...), sh(untilStop, dir)...)...)
		f.waitRegistered(tc.id)
		touch(t, filepath.Join(dir, "stop"))
		if code := w.wait(); code != 0 {
			t.Fatalf("%s: exit code %d, want 0", tc.id, code)
		}
		f.assertGone(tc.id)
	}

	dir := t.TempDir()
	w := startWrapper(t, dir, f.env(), append([]string{"--id=tls-none", "--interval=1"}, sh(untilStop, dir)...)...)
	w.waitLog("certificate signed by unknown authority")
	touch(t, filepath.Join(dir, "stop"))
	w.wait()
	if _, err := f.service("tls-none"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("without the CA: service %v, want it never registered", err)
	}
}

func TestKilledWrapperLetsTheServiceTimeOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=killed", "--interval=1"}, sh(untilStop, f.dir)...)...)
	killLater(t, f.path("pid"))
	f.waitRegistered("killed")
	waitFile(t, f.path("pid"))
	w.signal(syscall.SIGKILL)
	w.wait()
	waitFor(t, "the service to time out", func() bool {
		_, err := f.service("killed")
		return err != nil
	})
	f.assertGone("killed")
	if got, want := f.eventTypes("killed"), []registry.EventType{registry.ServiceJoin, registry.ServiceTimeout}; !reflect.DeepEqual(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestNoDeregisterLetsTheServiceTimeOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := startWrapper(t, f.dir, f.env(), append([]string{"--id=lingers", "--interval=1", "--no-deregister"}, sh("sleep 0.5", f.dir)...)...)
	f.waitRegistered("lingers")
	if code := w.wait(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if _, err := f.service("lingers"); err != nil {
		t.Errorf("with --no-deregister the service is gone at once: %v", err)
	}
	waitFor(t, "the service to time out", func() bool {
		_, err := f.service("lingers")
		return err != nil
	})
	if got, want := f.eventTypes("lingers"), []registry.EventType{registry.ServiceJoin, registry.ServiceTimeout}; !reflect.DeepEqual(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestBadCommandLine(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ran := f.path("ran")
	run := []string{"--", "touch", ran}
	noFile := f.path("no-such-program")
	notExec := f.path("not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string // replaces the fixture's environment when set
		args []string
		code int
		want string // in stderr
	}{
		{"no id", nil, append([]string{"--interval=1"}, run...), 2, "--id is required"},
		{"bad id", nil, append([]string{"--id=a b"}, run...), 2, "--id"},
		{"metadata without =", nil, append([]string{"--id=web1", "--metadata=ip=1,port"}, run...), 2, "--metadata"},
		{"metadata key twice", nil, append([]string{"--id=web1", "--metadata=ip=1,ip=2"}, run...), 2, "--metadata"},
		{"too many tags", nil, append([]string{"--id=web1", "--tags=a,b,c,d,e,f,g,h,i,j,k"}, run...), 2, "--tags"},
		{"interval too short", nil, append([]string{"--id=web1", "--interval=0.5"}, run...), 2, "--interval"},
		{"interval too long", nil, append([]string{"--id=web1", "--interval=41"}, run...), 2, "--interval"},
		{"interval not a number", nil, append([]string{"--id=web1", "--interval=soon"}, run...), 2, "--interval"},
		{"unknown flag", nil, append([]string{"--id=web1", "--bogus"}, run...), 2, "--bogus"},
		{"bad log format", nil, append([]string{"--id=web1", "--log-format=xml"}, run...), 2, "--log-format"},
		{"no command", nil, []string{"--id=web1", "--interval=1"}, 2, "no command"},
		{"no registry URL", []string{"SVCREG_URL=", "SVCREG_USERNAME=x", "SVCREG_API_KEY=dev"}, append([]string{"--id=web1"}, run...), 2, "--url"},
		{"CA file missing", nil, append([]string{"--id=web1", "--ca-cert", f.path("no-ca.pem")}, run...), 2, "no-ca.pem: no such file"},
		{"CA file without a certificate", nil, append([]string{"--id=web1", "--ca-cert", notExec}, run...), 2, "not-executable holds no PEM certificate"},
		{"command not found", nil, []string{"--id=web1", "--", noFile}, 127, "no-such-program"},
		{"command not executable", nil, []string{"--id=web1", "--", notExec}, 126, "not-executable"},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				env := tc.env
				if env == nil {
					env = f.env()
				}
				w := startWrapper(t, t.TempDir(), env, tc.args...)
				if code := w.wait(); code != tc.code {
					t.Errorf("exit code %d, want %d", code, tc.code)
				}
				if !strings.Contains(w.logs(), tc.want) {
					t.Errorf("stderr does not mention %q:\n%s", tc.want, w.logs())
				}
				if tc.code == 2 && !strings.Contains(w.logs(), "Run 'service-registry-wrapper --help' for usage.") {
					t.Errorf("stderr does not point to --help:\n%s", w.logs())
				}
			})
		}
	})
	if _, err := os.Stat(ran); err == nil {
		t.Errorf("a bad command line ran the command")
	}
	for s, err := range f.client.ListServices(t.Context(), registry.ServiceListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("a bad command line registered %s", s.ID)
	}
}

// A wrapper stopped while its registration is under way (sent, committed,
// no answer yet) deletes the service as it exits, rather than leaving a
// service that nothing runs to time out.
func TestStoppedWhileRegistering(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// A proxy in front of the registry that sends creates on and holds
	// their answers until the client gives up.
	created := make(chan struct{}, 1)
	env := f.proxied(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, target *url.URL) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/services") {
			rp.ServeHTTP(w, r)
			return
		}
		forward(context.WithoutCancel(r.Context()), r, target)
		created <- struct{}{}
		<-r.Context().Done()
	})
	// A heartbeat timeout longer than the wait for the answer that never
	// comes, so the registry still holds the service to delete.
	w := startWrapper(t, f.dir, env, append([]string{"--id=pending", "--interval=5"}, sh(untilStop, f.dir)...)...)
	select {
	case <-created:
	case <-time.After(waitLimit):
		t.Fatal("the wrapper sent no registration")
	}
	f.waitRegistered("pending")
	w.signal(syscall.SIGTERM)
	if code := w.wait(); code != 128+15 {
		t.Errorf("exit code %d, want %d", code, 128+15)
	}
	f.assertGone("pending")
	if logs := w.logs(); !strings.Contains(logs, "had got no answer") {
		t.Errorf("the wrapper did not say why it deleted the service:\n%s", logs)
	}
}

// TestStoppedWhileTheAnswerIsLate: a registration under way when the
// wrapper stops gets its answer (here held back until the stop), and the
// answer decides: created, the wrapper deletes the service; refused
// because another instance holds the id, it leaves that one alone.
func TestStoppedWhileTheAnswerIsLate(t *testing.T) {
	t.Parallel()
	for _, taken := range []bool{false, true} {
		t.Run(fmt.Sprintf("taken=%t", taken), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if taken {
				if _, err := f.client.CreateService(t.Context(), registry.Service{ID: "late", HeartbeatTimeout: 120}); err != nil {
					t.Fatal(err)
				}
			}
			w, stopped := startRegistering(t, f, "late")
			w.signal(syscall.SIGTERM)
			w.waitLog("signal before the command started")
			close(stopped)
			if code := w.wait(); code != 128+15 {
				t.Errorf("exit code %d, want %d", code, 128+15)
			}
			_, err := f.service("late")
			switch {
			case taken && err != nil:
				t.Errorf("the other instance's service: %v; the wrapper must not delete what it does not hold", err)
			case !taken && !errors.Is(err, registry.ErrNotFound):
				t.Errorf("the service the late answer created: %v; want it deleted", err)
			case !taken && !strings.Contains(w.logs(), `msg="service deregistered"`):
				t.Errorf("the wrapper did not deregister the service as its own:\n%s", w.logs())
			}
		})
	}
}

// TestStopSignalsBeforeTheCommandStarted: a container runtime's stop
// signal may be SIGQUIT (nginx's image) or SIGUSR1 (HAProxy's), as well
// as SIGTERM; one that comes while the first registration is under way
// ends the wrapper as it would have ended the command, which never starts.
func TestStopSignalsBeforeTheCommandStarted(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			w, stopped := startRegistering(t, f, "early")
			w.signal(sig)
			w.waitLog("signal before the command started; exiting")
			close(stopped)
			if code := w.wait(); code != 128+int(sig) {
				t.Errorf("exit code %d, want %d", code, 128+int(sig))
			}
			if _, err := os.Stat(filepath.Join(f.dir, "pid")); err == nil {
				t.Error("the command started")
			}
		})
	}
}

// startRegistering starts the wrapper of service id, running untilStop,
// and returns once its first create has reached the registry, which gets
// it only once stopped is closed (or the test has failed and gone).
func startRegistering(t *testing.T, f *fixture, id string) (w *proc, stopped chan struct{}) {
	t.Helper()
	arrived, stopped := make(chan struct{}, 1), make(chan struct{})
	env := f.proxied(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, _ *url.URL) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/services") {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-stopped:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})
	w = startWrapper(t, f.dir, env, append([]string{"--id=" + id, "--interval=5"}, sh(untilStop, f.dir)...)...)
	select {
	case <-arrived:
	case <-time.After(waitLimit):
		t.Fatal("the wrapper sent no registration")
	}
	return w, stopped
}

// TestTakenThenNoAnswerLeavesTheHolder: once the registry said another
// instance holds the id, a later registration that gets no usable answer
// (here a 502 from a proxy, after the registry refused the create again)
// did not make the service this wrapper's: stopped, it deletes nothing.
func TestTakenThenNoAnswerLeavesTheHolder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.client.CreateService(t.Context(), registry.Service{ID: "held", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	var creates atomic.Int32
	failed := make(chan struct{}, 1)
	env := f.proxied(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, target *url.URL) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/services") || creates.Add(1) == 1 {
			rp.ServeHTTP(w, r) // the first create: the registry says the id is taken
			return
		}
		forward(r.Context(), r, target)
		http.Error(w, "bad gateway", http.StatusBadGateway)
		select {
		case failed <- struct{}{}:
		default:
		}
	})
	w := startWrapper(t, f.dir, env, append([]string{"--id=held", "--interval=1"}, sh(untilStop, f.dir)...)...)
	w.waitLog("another instance holds the id")
	select {
	case <-failed:
	case <-time.After(waitLimit):
		t.Fatal("the wrapper sent no second registration")
	}
	w.waitLog("502") // the answer reached the wrapper before the stop
	w.signal(syscall.SIGTERM)
	if code := w.wait(); code != 128+15 {
		t.Errorf("exit code %d, want %d", code, 128+15)
	}
	if _, err := f.service("held"); err != nil {
		t.Errorf("the other instance's service: %v; a registration without an answer after the id was taken must not make the wrapper delete it", err)
	}
}

// TestNoAnswerThenTakenLeavesTheHolder: the other order. A registration
// that got no answer (a 502 from a proxy that never passed it on), then one
// the registry refuses because another instance holds the id: the first
// was not made either, as far as anyone knows, and stopped, the wrapper
// deletes nothing.
func TestNoAnswerThenTakenLeavesTheHolder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.client.CreateService(t.Context(), registry.Service{ID: "held2", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	env, _ := f.afterAnUnansweredCreate(nil)
	w := startWrapper(t, f.dir, env, append([]string{"--id=held2", "--interval=1"}, sh(untilStop, f.dir)...)...)
	w.waitLog("another instance holds the id")
	w.signal(syscall.SIGTERM)
	if code := w.wait(); code != 128+15 {
		t.Errorf("exit code %d, want %d", code, 128+15)
	}
	if _, err := f.service("held2"); err != nil {
		t.Errorf("the other instance's service: %v; the wrapper deleted a service it never held\n%s", err, w.logs())
	}
}

// TestNoAnswerThenTakenAsItStopsLeavesTheHolder: a registration that got
// no answer, then one under way when SIGTERM comes, whose answer, within
// the 3 s the wrapper waits for it, says another instance holds the id:
// the wrapper deletes nothing.
func TestNoAnswerThenTakenAsItStopsLeavesTheHolder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.client.CreateService(t.Context(), registry.Service{ID: "held3", HeartbeatTimeout: 120}); err != nil {
		t.Fatal(err)
	}
	arrived, stopped := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(stopped) }) }
	t.Cleanup(release)
	env, _ := f.afterAnUnansweredCreate(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // held until the wrapper has stopped its command
		case <-stopped:
			rp.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	})
	w := startWrapper(t, f.dir, env, append([]string{"--id=held3", "--interval=1"}, sh(untilStop, f.dir)...)...)
	select {
	case <-arrived:
	case <-time.After(waitLimit):
		t.Fatal("no second registration")
	}
	w.signal(syscall.SIGTERM)
	w.waitLog("command killed by a signal")
	release()
	if code := w.wait(); code != 128+15 {
		t.Errorf("exit code %d, want %d", code, 128+15)
	}
	if _, err := f.service("held3"); err != nil {
		t.Errorf("the other instance's service: %v; the wrapper deleted a service the registry had just said was another's\n%s", err, w.logs())
	}
}

// TestOldNoAnswerLeavesALaterHolder: a registration got no answer, the
// later ones were refused (not made). Once whatever the first may have
// made has timed out (a heartbeat timeout, 3 s here, and a margin),
// another instance registers the id: when the command exits, the wrapper
// leaves that instance's service alone.
func TestOldNoAnswerLeavesALaterHolder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	env, creates := f.afterAnUnansweredCreate(refuseLimit)
	w := startWrapper(t, f.dir, env, append([]string{"--id=stale", "--interval=1"}, sh(untilStop, f.dir)...)...)
	waitFile(t, f.path("pid"))
	waitFor(t, "a second registration, refused", func() bool { return creates.Load() >= 2 })
	time.Sleep(3*time.Second + 5*time.Second)
	hb, err := f.client.Register(t.Context(), registry.Service{ID: "stale", HeartbeatTimeout: 30, Tags: []string{"B"}}, registry.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Stop()
	touch(t, f.path("stop"))
	w.wait()
	if s, err := f.service("stale"); err != nil || !s.HasTag("B") {
		t.Errorf("the other instance's service after this one exited: %+v, %v; want it kept\n%s", s, err, w.logs())
	}
}

// TestRefusalAfterAPassingFailureIsLogged: a registration fails in a way
// that retrying may fix (a 502), the next one is refused (the account's
// limit): the refusal is logged as an error at once, not held back as a
// reminder of the first failure.
func TestRefusalAfterAPassingFailureIsLogged(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	env, _ := f.afterAnUnansweredCreate(refuseLimit)
	w := startWrapper(t, f.dir, env, append([]string{"--id=refused-later", "--interval=1"}, sh(untilStop, f.dir)...)...)
	w.waitLog("cannot register the service")
	w.waitLog("the registry refused the service")
	touch(t, f.path("stop"))
	w.wait()
}

// TestTimedOutWhileHeartbeatsFailedLeavesTheNewHolder: heartbeats fail
// (a proxy answers 502) until the registry times the service out, and
// another instance registers the id. When the command exits, the wrapper
// does not delete that instance's service: past the deadline it deletes
// only once a heartbeat with its own token shows the service is its own.
func TestTimedOutWhileHeartbeatsFailedLeavesTheNewHolder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var failing atomic.Bool
	env := f.proxied(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, _ *url.URL) {
		if failing.Load() && strings.HasSuffix(r.URL.Path, "/heartbeat") {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	})
	w := startWrapper(t, f.dir, env, append([]string{"--id=shared", "--interval=1"}, sh(untilStop, f.dir)...)...)
	f.waitRegistered("shared")
	waitFile(t, f.path("pid"))
	failing.Store(true)
	waitFor(t, "the registry to time the service out", func() bool {
		_, err := f.service("shared")
		return err != nil
	})
	// Another instance (another host) registers the id and heartbeats it.
	hb, err := f.client.Register(t.Context(), registry.Service{ID: "shared", HeartbeatTimeout: 30, Tags: []string{"B"}}, registry.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Stop()
	touch(t, f.path("stop"))
	w.wait()
	if s, err := f.service("shared"); err != nil || !s.HasTag("B") {
		t.Errorf("the other instance's service after this one exited: %+v, %v; want it kept\n%s", s, err, w.logs())
	}
	// Its heartbeat fails too (502): it cannot tell, and deletes nothing.
	if logs := w.logs(); !strings.Contains(logs, "leaving it to time out") {
		t.Errorf("the wrapper did not say why it deleted nothing:\n%s", logs)
	}
}

// proxied starts a proxy in front of the fixture's registry, in which
// handle answers each request (rp passes it on to the registry at target),
// and returns the wrapper's environment to reach the registry through it.
func (f *fixture) proxied(handle func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, target *url.URL)) []string {
	f.t.Helper()
	target, err := url.Parse(f.srv.URL)
	if err != nil {
		f.t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(w, r, rp, target) }))
	f.t.Cleanup(proxy.Close)
	return []string{"SVCREG_URL=" + proxy.URL + "/v1.0", "SVCREG_USERNAME=" + f.user, "SVCREG_API_KEY=dev"}
}

// afterAnUnansweredCreate is a proxy to the registry (f.proxied) whose
// first service create gets a 502 that it never passed on: the wrapper
// cannot tell whether the registry made the service. Later creates go to
// later, or on to the registry if later is nil. It returns the wrapper's
// environment and the count of creates.
func (f *fixture) afterAnUnansweredCreate(later func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy)) ([]string, *atomic.Int32) {
	creates := new(atomic.Int32)
	env := f.proxied(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, _ *url.URL) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/services") {
			if creates.Add(1) == 1 {
				http.Error(w, "bad gateway", http.StatusBadGateway)
				return
			}
			if later != nil {
				later(w, r, rp)
				return
			}
		}
		rp.ServeHTTP(w, r)
	})
	return env, creates
}

// refuseLimit answers a create as a registry whose account holds all the
// services it may: refused, not made.
func refuseLimit(w http.ResponseWriter, _ *http.Request, _ *httputil.ReverseProxy) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	io.WriteString(w, `{"limitReached":{"code":400,"message":"Resource limit has been reached","details":"Limit for resource service has been reached. Maximum allowed objects: 1"}}`)
}

// forward sends r on to target (the registry) under ctx and drops the
// answer: the registry acts on it, and the client is told something else.
func forward(ctx context.Context, r *http.Request, target *url.URL) {
	out := r.Clone(ctx)
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = target.Scheme, target.Host, target.Host, ""
	if resp, err := http.DefaultTransport.RoundTrip(out); err == nil {
		resp.Body.Close()
	}
}

// A registry that takes longer than 10 s to answer a registration (here
// 10.5 s, well within the service's 30 s timeout) is waited for, up to the
// registration attempt's own bound (30 s): a
// client-wide timeout of 10 s used to cut every such answer, and the
// wrapper, sending its create again, found its own service holding the id.
func TestSlowRegistrationAnswerIsWaitedFor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var creates atomic.Int32
	env := f.proxied(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, _ *url.URL) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/services") && creates.Add(1) == 1 {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r) // created at once, answered 10.5 s later
			select {
			case <-time.After(10500 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		rp.ServeHTTP(w, r)
	})
	w := startWrapper(t, f.dir, env, append([]string{"--id=slow", "--interval=10"}, sh(untilStop, f.dir)...)...)
	f.waitHeartbeat("slow")
	if n := creates.Load(); n != 1 {
		t.Errorf("%d creates sent, want 1:\n%s", n, w.logs())
	}
	w.signal(syscall.SIGTERM)
	w.wait()
}

// A 404 that is not the registry's (a proxy's page: a route it lost, a
// node it took out) is a failed heartbeat, sent again, not the registry
// forgetting the service: the wrapper used to register again, find its own
// service holding the id, and give it up.
func TestProxys404IsNotForgotten(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var beats, refused atomic.Int32
	env := f.proxied(func(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy, _ *url.URL) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/heartbeat") && refused.Add(1) == 1 {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "<html><body>404 Not Found</body></html>")
			return
		}
		if strings.HasSuffix(r.URL.Path, "/heartbeat") {
			beats.Add(1)
		}
		rp.ServeHTTP(w, r)
	})
	w := startWrapper(t, f.dir, env, append([]string{"--id=proxied", "--interval=1"}, sh(untilStop, f.dir)...)...)
	waitFor(t, "heartbeats after the proxy's 404", func() bool { return beats.Load() >= 2 })
	// The messages, not words: the user's name, in the log when the
	// login is slow, holds "forgotten".
	if logs := w.logs(); strings.Contains(logs, `msg="the registry forgot the service`) || strings.Contains(logs, "another instance") {
		t.Errorf("the wrapper took a proxy's 404 for the registry's:\n%s", logs)
	}
	w.signal(syscall.SIGTERM)
	w.wait()
	if !strings.Contains(w.logs(), `msg="service deregistered"`) {
		t.Errorf("the wrapper did not deregister its service:\n%s", w.logs())
	}
}

// The command is the service, not the account: it does not get the
// wrapper's credentials unless --pass-credentials says so.
func TestCommandGetsNoCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   string
		args []string
		key  string // the command's $SVCREG_API_KEY
	}{
		{"creds-kept", nil, ""},
		{"creds-passed", []string{"--pass-credentials"}, "dev"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			script := `echo "[$SVCREG_API_KEY|$SVCREG_USERNAME|$SVCREG_URL|$SVCREG_SERVICE_ID]" > "$1/env"
` + untilStop
			args := append(append([]string{"--id=" + tc.id, "--interval=1"}, tc.args...), sh(script, f.dir)...)
			w := startWrapper(t, f.dir, f.env("SVCREG_SERVICE_ID=inherited"), args...)
			want := fmt.Sprintf("[%s|%s|%s|%s]", tc.key, f.user, f.srv.APIURL, tc.id)
			if got := waitFile(t, f.path("env")); got != want {
				t.Errorf("the command's environment: %q, want %q", got, want)
			}
			touch(t, f.path("stop"))
			if code := w.wait(); code != 0 {
				t.Fatalf("exit code %d, want 0", code)
			}
		})
	}
}

// TestSilentRegistryHoldsTheCommandOneAttempt: a registry (and its
// identity endpoint) that takes connections and never answers holds the
// command up for a quarter of the heartbeat timeout, the login included,
// not for the 30 s a login or a create may take; and the log says which
// request has had no answer.
func TestSilentRegistryHoldsTheCommandOneAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  func(url string) []string
		log  string // what the log says, with the registry's URL for %[1]s
	}{
		{"login", func(u string) []string {
			return []string{"SVCREG_URL=" + u + "/v1.0", "SVCREG_USERNAME=silent", "SVCREG_API_KEY=dev"}
		}, `msg="the identity service has not answered the login; the command runs anyway, the login goes on" prog=service-registry-wrapper service=silent err="registry: authenticate silent: Post \"%[1]s/v2.0/tokens\": no answer within 750ms"`},
		{"create", func(u string) []string {
			return []string{"SVCREG_URL=" + u + "/v1.0", "SVCREG_TOKEN=t", "SVCREG_TENANT=1"}
		}, `msg="the registry has not answered the registration yet; the command runs anyway, still waiting for the answer" prog=service-registry-wrapper service=silent url=%[1]s/v1.0 waited=`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Takes connections and never answers on them.
			u := "http://" + testnet.Serve(t, func(c net.Conn) {
				<-t.Context().Done()
				c.Close()
			})
			dir := t.TempDir()
			w := startWrapper(t, dir, tc.env(u), append([]string{"--id=silent", "--interval=1"}, sh(untilStop, dir)...)...)
			// The wait is 0.75 s here; a login's or a create's own time
			// is 30 s, after which the log said only that there was no
			// answer within the attempt's time.
			waitFile(t, filepath.Join(dir, "pid"))
			w.waitLog(`msg="command started"`)
			logs := w.logs()
			said := strings.Index(logs, fmt.Sprintf(tc.log, u))
			if said < 0 || said > strings.Index(logs, `msg="command started"`) {
				t.Errorf("the log does not say, before the command started, which request has had no answer (%s):\n%s", fmt.Sprintf(tc.log, u), logs)
			}
			touch(t, filepath.Join(dir, "stop"))
			w.wait()
		})
	}
}

// The registry answers the create 409 at once (an old instance holds the
// id) and then takes its time to say how long that instance's timeout is:
// the command still waits for the old instance, rather than start at the
// quarter of the timeout that a registration without an answer gets.
func TestOldInstanceHoldsTheCommandWhileItsTimeoutIsRead(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/services"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"type":"serviceWithThisIdExists","code":409,"message":"taken","details":"taken"}`)
		case r.Method == "GET":
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"held","heartbeat_timeout":120,"tags":[],"metadata":{}}`)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	w := startWrapper(t, dir, []string{"SVCREG_URL=" + srv.URL + "/v1.0", "SVCREG_TOKEN=" + strings.Repeat("t", 24), "SVCREG_TENANT=1"},
		append([]string{"--id=held", "--interval=1"}, sh(untilStop, dir)...)...)
	// Twice the quarter of the timeout (0.75 s at --interval 1).
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
		t.Errorf("the command started while an old instance held the id:\n%s", w.logs())
	}
	touch(t, filepath.Join(dir, "stop"))
}

// With --abort-on-failure, an identity service that refuses the
// credentials after the quarter of the timeout still keeps the command
// from starting: the command waits for the answer.
func TestSlowRefusalStillAborts(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Second) // past 0.75 s, the quarter of the timeout at --interval 1
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"unauthorized":{"code":401,"message":"bad key"}}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	w := startWrapper(t, dir, []string{"SVCREG_URL=" + srv.URL + "/v1.0", "SVCREG_USERNAME=u", "SVCREG_API_KEY=k"},
		append([]string{"--id=refused", "--interval=1", "--abort-on-failure"}, sh(untilStop, dir)...)...)
	code := w.wait()
	if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil || code != 69 {
		t.Errorf("exit %d; the command started though the credentials were refused (--abort-on-failure):\n%s", code, w.logs())
	}
}

// A shell that does not exec its program leaves it running when SIGTERM
// (which reaches the shell alone) ends the shell: the wrapper names it,
// and stops it, SIGTERM first, as it deregisters and exits; one that
// ignores SIGTERM is killed after --grace-period. Before, they ran on
// after the wrapper, unregistered.
func TestLeftoverProcessesAreStopped(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("only Linux makes the wrapper a subreaper, to which the command's orphans go")
	}
	for _, tc := range []struct {
		name, leftover, grace string
		killed                bool
	}{
		// A grace the leftover surely takes less than: the wrapper
		// exits once it is gone.
		{"on SIGTERM", `(trap 'echo > "$1/termed"; exit 0' TERM; while :; do sleep 0.05; done) &`, "60s", false},
		{"ignoring SIGTERM", `(trap '' TERM; while :; do sleep 0.05; done) &`, "500ms", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			script := tc.leftover + ` echo $! > "$1/leftover"
` + untilStop
			w := startWrapper(t, f.dir, f.env(), append([]string{"--id=leftover1", "--interval=1", "--grace-period=" + tc.grace}, sh(script, f.dir)...)...)
			leftover := leftoverPid(t, f)
			touch(t, f.path("stop"))
			w.wait()
			logs := w.logs()
			if !strings.Contains(logs, `msg="the command left processes running: stopping them`) || !strings.Contains(logs, fmt.Sprintf("pids=[%d]", leftover)) {
				t.Errorf("the log does not name the leftover (%d):\n%s", leftover, logs)
			}
			if alive(leftover) {
				t.Errorf("the leftover (%d) runs on after the wrapper", leftover)
			}
			_, err := os.Stat(f.path("termed"))
			if killed := strings.Contains(logs, `msg="leftover processes did not end on SIGTERM: killed them (SIGKILL)"`); killed != tc.killed || !tc.killed && err != nil {
				t.Errorf("killed %t (want %t), SIGTERM handled: %v\n%s", killed, tc.killed, err, logs)
			}
			if !strings.Contains(logs, `msg="leftover processes stopped"`) {
				t.Errorf("the log does not say the leftovers stopped:\n%s", logs)
			}
		})
	}
	t.Run("a SIGTERM meanwhile", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		script := `(trap '' TERM; while :; do sleep 0.05; done) & echo $! > "$1/leftover"
` + untilStop
		w := startWrapper(t, f.dir, f.env(), append([]string{"--id=leftover3", "--interval=1", "--grace-period=10m"}, sh(script, f.dir)...)...)
		leftover := leftoverPid(t, f)
		touch(t, f.path("stop"))
		w.waitLog(`msg="the command left processes running: stopping them`)
		w.signal(syscall.SIGTERM)
		w.wait()
		if logs := w.logs(); alive(leftover) || !strings.Contains(logs, `msg="killing the leftover processes now"`) {
			t.Errorf("a SIGTERM while the leftover (%d) had its grace: alive %t\n%s", leftover, alive(leftover), logs)
		}
	})
	t.Run("--keep-leftovers", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		script := `sleep 60 & echo $! > "$1/leftover"
` + untilStop
		w := startWrapper(t, f.dir, f.env(), append([]string{"--id=leftover2", "--interval=1", "--keep-leftovers"}, sh(script, f.dir)...)...)
		leftover := leftoverPid(t, f)
		touch(t, f.path("stop"))
		w.wait()
		if logs := w.logs(); !strings.Contains(logs, `run on after the wrapper (--keep-leftovers)`) || !strings.Contains(logs, fmt.Sprintf("pids=[%d]", leftover)) {
			t.Errorf("the log does not name the leftover sleep (%d):\n%s", leftover, logs)
		}
		if !alive(leftover) {
			t.Errorf("the leftover (%d) was stopped, with --keep-leftovers", leftover)
		}
	})
}

// Where /proc is another PID namespace's (a sandbox that made a PID
// namespace of its own and mounted no /proc for it), its pids are not the
// wrapper's: it signals none. Before, it took the children of the outer
// namespace's init for its own leftovers, as PID 1 of the inner one, and
// signalled the inner processes with their numbers.
func TestLeftoversNotLookedForInAnotherNamespacesProc(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("PID namespaces are Linux's")
	}
	if err := exec.Command("unshare", "-Urpf", "true").Run(); err != nil {
		testprog.SkipOrFail(t, fmt.Sprintf("this machine makes no user and PID namespaces unprivileged (unshare -Urpf: %v)", err), "")
	}
	f := newFixture(t)
	attr := &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	w := startWrapperCmd(t, f.dir, nil, attr, f.env(), append([]string{"--id=nsproc1", "--interval=1", "--grace-period=500ms"}, sh(untilStop, f.dir)...)...)
	waitFile(t, f.path("pid"))
	touch(t, f.path("stop"))
	if code := w.wait(); code != 0 {
		t.Fatalf("exit %d\n%s", code, w.logs())
	}
	if logs := w.logs(); strings.Contains(logs, "leftover") || strings.Contains(logs, "left processes") {
		t.Errorf("the command left nothing, but the wrapper looked for leftovers in the outer namespace's /proc:\n%s", logs)
	}
}

// leftoverPid waits for the command to start and returns the pid of the
// process it left, which the test kills when it ends.
func leftoverPid(t *testing.T, f *fixture) int {
	t.Helper()
	waitFile(t, f.path("pid"))
	leftover, err := strconv.Atoi(waitFile(t, f.path("leftover")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(leftover, syscall.SIGKILL) })
	return leftover
}

// A command that cannot be started (an executable file the kernel cannot
// run) leaves no service behind, even with --no-deregister: nothing ever
// ran behind it.
func TestCommandThatCannotStartIsDeregistered(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := f.path("bad-binary")
	if err := os.WriteFile(bad, []byte("\x7fELF not really\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{{"--id=cannot-start"}, {"--id=cannot-start-nd", "--no-deregister"}} {
		id := strings.TrimPrefix(flags[0], "--id=")
		w := startWrapper(t, t.TempDir(), f.env(), append(append([]string{"--interval=40"}, flags...), "--", bad)...)
		if code := w.wait(); code != 126 {
			t.Errorf("%v: exit code %d, want 126", flags, code)
		}
		if !strings.Contains(w.logs(), "exec format error") {
			t.Errorf("%v: stderr does not say why the command cannot start:\n%s", flags, w.logs())
		}
		if s, err := f.service(id); err == nil {
			t.Errorf("%v: service %s left registered though its command never started", flags, s.ID)
		}
	}
}

// A script whose #! interpreter is missing exits 127, as in a shell, with
// a message that says what is missing: the script itself exists.
func TestCommandWithAMissingInterpreter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	script := f.path("script")
	if err := os.WriteFile(script, []byte("#!/no/such/interpreter\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := startWrapper(t, t.TempDir(), f.env(), "--id=bang-missing", "--interval=1", "--", script)
	if code := w.wait(); code != 127 {
		t.Errorf("exit code %d, want 127", code)
	}
	if !strings.Contains(w.logs(), "interpreter its #! line names") {
		t.Errorf("stderr does not say the interpreter is missing:\n%s", w.logs())
	}
	if _, err := f.service("bang-missing"); err == nil {
		t.Errorf("service left registered though its command never started")
	}
}
