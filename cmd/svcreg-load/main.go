// Command svcreg-load measures a svcreg server under load: heartbeat
// throughput against a trivial Go handler serving the same load on the
// same machine, the memory of idle long-polls, and the fan-out latency of
// one event to many waiting long-polls; and the renderer's CPU time per
// registry change (render), against an older svcreg with --baseline and
// against confd watching etcd with --confd.
//
// It starts the servers it measures as child processes:
//
//	go build -o bin/ ./cmd/... && bin/svcreg-load --svcreg bin/svcreg all
//	bin/svcreg-load --svcreg bin/svcreg --baseline /tmp/svcreg-old render
//	bin/svcreg-load --svcreg bin/svcreg --confd /tmp/confd/confd --etcd /usr/bin/etcd render
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/svcreg/svcreg/internal/proccpu"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "trivial-server" {
		serveTrivial()
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "svcreg-load:", err)
		os.Exit(1)
	}
}

type options struct {
	svcreg   string
	clients  int
	duration time.Duration
	warmup   time.Duration
	waiters  string
	services string
	rate     string
	changes  string
	burst    time.Duration
	trials   int
	baseline string
	confd    string
	etcd     string
	client   string
	perf     string
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("svcreg-load", flag.ContinueOnError)
	fs.StringVar(&o.svcreg, "svcreg", "bin/svcreg", "path to the svcreg binary")
	fs.IntVar(&o.clients, "clients", 64, "concurrent heartbeat clients, one connection each")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each heartbeat run measures")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each heartbeat run")
	fs.StringVar(&o.waiters, "waiters", "1000,10000", "comma-separated long-poll counts for the fan-out runs")
	fs.StringVar(&o.services, "services", "1000,5000,10000", "render: comma-separated counts of preloaded services")
	fs.StringVar(&o.rate, "rate", "250", "render: changes per second during the burst; one rate, or one per --services count")
	fs.StringVar(&o.changes, "changes", "", "render: changes in the burst; one count, or one per --services count (default: rate × --burst)")
	fs.DurationVar(&o.burst, "burst", 20*time.Second, "render: how long the burst of changes lasts, unless --changes says")
	fs.IntVar(&o.trials, "trials", 3, "render: trials per service count and renderer, interleaved")
	fs.StringVar(&o.baseline, "baseline", "", "render: other svcreg `binaries` (comma-separated) whose renderers run the same trials, for comparison")
	fs.StringVar(&o.confd, "confd", "", "render: a confd `binary` (0.16, etcdv3 backend) to run the same trials, watching an etcd\nthat holds the same services; needs --etcd")
	fs.StringVar(&o.etcd, "etcd", "", "render: the etcd `binary` (v3 API) for --confd, started on loopback ports in a temporary directory")
	fs.StringVar(&o.client, "client", "raw", "long-poll clients: raw (one goroutine reading a plain TCP connection each, so that\nthe client's own cost weighs little in the fan-out latency) or http (net/http's client)")
	fs.StringVar(&o.perf, "perf", "", "longpoll: record each fan-out with `perf record -g` into this directory, one file for the\nserver and one for the load tool (its clients), from just before the write to the last answer")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: svcreg-load [flags] heartbeat|longpoll|render|all\n\nall runs heartbeat and longpoll.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	what := fs.Arg(0)
	if what == "" {
		what = "all"
	}
	switch what {
	case "heartbeat":
		return benchHeartbeats(o)
	case "longpoll":
		return benchLongPolls(o)
	case "render":
		return benchRender(o)
	case "all":
		if err := benchHeartbeats(o); err != nil {
			return err
		}
		return benchLongPolls(o)
	}
	return fmt.Errorf("unknown benchmark %q: use heartbeat, longpoll, render or all", what)
}

// child is a server started as a child process.
type child struct {
	cmd *exec.Cmd
	url string
}

var urlLine = regexp.MustCompile(`url=(http://[0-9.:]+)`)

func startChild(name string, args ...string) (*child, error) {
	cmd := exec.Command(name, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := urlLine.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, stderr)
			return &child{cmd: cmd, url: m[1]}, nil
		}
	}
	cmd.Wait()
	return nil, fmt.Errorf("%s exited before it listened", name)
}

func (c *child) stop() {
	c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// cpu is the CPU time (user and system) the child has used.
func (c *child) cpu() (time.Duration, error) { return proccpu.Of(c.cmd.Process.Pid) }

// rssMB is the child's resident set size in MB.
func (c *child) rssMB() (float64, error) { return c.statusMB("VmRSS:") }

func startSvcreg(o options, extra ...string) (*child, error) {
	dir, err := os.MkdirTemp("", "svcreg-load-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}, extra...)
	return startChild(o.svcreg, args...)
}

// serveTrivial is the baseline: a Go handler that reads the body and
// answers a token-sized JSON body, as the heartbeat handler does.
func serveTrivial() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "url=http://%s\n", ln.Addr())
	body := []byte(`{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`)
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.Write(body)
	}))
}

type session struct {
	base, token string
}

func login(url, user string) (session, error) {
	body := fmt.Sprintf(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":%q,"apiKey":"dev"}}}`, user)
	resp, err := http.Post(url+"/v2.0/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		return session{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Access struct {
			Token struct {
				ID     string              `json:"id"`
				Tenant struct{ ID string } `json:"tenant"`
			} `json:"token"`
		} `json:"access"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return session{}, err
	}
	return session{base: url + "/v1.0/" + out.Access.Token.Tenant.ID, token: out.Access.Token.ID}, nil
}

func (s session) request(ctx context.Context, c *http.Client, method, path string, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-Auth-Token", s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute}}
}

type result struct {
	n         int
	perSecond float64
	p50, p99  time.Duration
}

// load runs o.clients closed loops of beat for warmup+duration and reports
// the measured part.
func load(o options, setup func(i int) (func() error, error)) (result, error) {
	beats := make([]func() error, o.clients)
	for i := range beats {
		b, err := setup(i)
		if err != nil {
			return result{}, err
		}
		beats[i] = b
	}
	var measuring atomic.Bool
	stop := make(chan struct{})
	lat := make([][]time.Duration, o.clients)
	errs := make(chan error, o.clients)
	var wg sync.WaitGroup
	for i := range beats {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t := time.Now()
				if err := beats[i](); err != nil {
					errs <- err
					return
				}
				if measuring.Load() {
					lat[i] = append(lat[i], time.Since(t))
				}
			}
		}(i)
	}
	time.Sleep(o.warmup)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(o.duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) == 0 {
		return result{}, errors.New("no requests completed")
	}
	return result{n: len(all), perSecond: float64(len(all)) / elapsed.Seconds(), p50: all[len(all)/2], p99: all[len(all)*99/100]}, nil
}

func benchHeartbeats(o options) error {
	triv, err := startChild(os.Args[0], "trivial-server")
	if err != nil {
		return err
	}
	client := newClient(o.clients)
	body := []byte(`{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`)
	base, err := load(o, func(int) (func() error, error) {
		return func() error {
			resp, err := client.Post(triv.url+"/hb", "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}, nil
	})
	triv.stop()
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}

	srv, err := startSvcreg(o, "--service-limit", strconv.Itoa(o.clients+10))
	if err != nil {
		return err
	}
	defer srv.stop()
	s, err := login(srv.url, "load")
	if err != nil {
		return err
	}
	client = newClient(o.clients)
	ctx := context.Background()
	hb, err := load(o, func(i int) (func() error, error) {
		id := fmt.Sprintf("load-%d", i)
		resp, data, err := s.request(ctx, client, "POST", "/services", []byte(`{"id":"`+id+`","heartbeat_timeout":120}`))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusCreated {
			return nil, fmt.Errorf("create %s: %d %s", id, resp.StatusCode, data)
		}
		var tok struct{ Token string }
		json.Unmarshal(data, &tok)
		return func() error {
			resp, data, err := s.request(ctx, client, "POST", "/services/"+id+"/heartbeat", []byte(`{"token":"`+tok.Token+`"}`))
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("heartbeat %s: %d %s", id, resp.StatusCode, data)
			}
			return json.Unmarshal(data, &tok)
		}, nil
	})
	if err != nil {
		return fmt.Errorf("heartbeats: %w", err)
	}
	fmt.Printf("heartbeat throughput, %d clients, %s measured after %s warm-up\n", o.clients, o.duration, o.warmup)
	fmt.Printf("  trivial Go handler   %9.0f req/s   p50 %-9s p99 %s\n", base.perSecond, base.p50, base.p99)
	fmt.Printf("  svcreg heartbeats    %9.0f req/s   p50 %-9s p99 %s\n", hb.perSecond, hb.p50, hb.p99)
	fmt.Printf("  ratio                %9.2f   (target >= 0.50)\n", hb.perSecond/base.perSecond)
	return nil
}

func benchLongPolls(o options) error {
	counts, err := parseCounts("--waiters", o.waiters)
	if err != nil {
		return err
	}
	if o.client != "raw" && o.client != "http" {
		return fmt.Errorf("--client: %q is not raw or http", o.client)
	}
	var extra []string
	if hasFlag(o.svcreg, "--max-waiters-total") {
		// One tenant's waiters, past the defaults derived from a small
		// descriptor limit.
		most := strconv.Itoa(slices.Max(counts))
		extra = []string{"--max-waiters", most, "--max-waiters-total", most}
	}
	srv, err := startSvcreg(o, extra...)
	if err != nil {
		return err
	}
	defer srv.stop()
	s, err := login(srv.url, "longpoll")
	if err != nil {
		return err
	}
	ctx := context.Background()
	idle, err := srv.rssMB()
	if err != nil {
		return err
	}
	fmt.Printf("long-polls: server RSS before any waiter %.1f MB\n", idle)
	for round, n := range counts {
		client := newClient(n)
		resp, _, err := s.request(ctx, client, "GET", "/services", nil)
		if err != nil {
			return err
		}
		marker := resp.Header.Get("X-Registry-Marker")
		received := make([]time.Time, n)
		arrived := make([]time.Time, n) // raw clients, where the kernel stamps arrivals
		var wg sync.WaitGroup
		errs := make(chan error, n)
		// A raw client keeps its connection until every client has its
		// answer: closing it costs both the client and the server more than
		// reading the answer, work that clients on other machines would not
		// add to the fan-out. The load tool closes them all afterwards.
		conns := make([]net.Conn, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				var code int
				var data []byte
				var err error
				// Sent again after a pause if the account's list reads
				// waiting at once are past their bound, as a real
				// client backs off: thousands connecting at once may
				// be, for a moment.
				for try := 0; ; try++ {
					if o.client == "raw" {
						var a rawAnswer
						a, err = rawGet(s, "/events?wait=5m&marker="+marker)
						code, data, arrived[i], conns[i] = a.code, a.body, a.arrived, a.conn
					} else {
						var resp *http.Response
						if resp, data, err = s.request(ctx, client, "GET", "/events?wait=5m&marker="+marker, nil); err == nil {
							code = resp.StatusCode
						}
					}
					if err != nil || code != http.StatusBadRequest || !bytes.Contains(data, []byte("rateLimitReached")) || try == 20 {
						break
					}
					if conns[i] != nil {
						conns[i].Close()
					}
					time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
				}
				received[i] = time.Now()
				if err == nil && (code != http.StatusOK || !bytes.Contains(data, []byte("configuration_value.update"))) {
					err = fmt.Errorf("long-poll answered %d %s", code, data)
				}
				if err != nil {
					errs <- err
				}
			}(i)
		}
		if err := waitForWaiters(srv.url, n); err != nil {
			return err
		}
		time.Sleep(time.Second) // let the server settle
		rss, err := srv.rssMB()
		if err != nil {
			return err
		}
		if os.Getenv("SVCREG_LOAD_DEBUG") != "" {
			resp, err := http.Get(srv.url + "/metrics")
			if err == nil {
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, l := range strings.Split(string(data), "\n") {
					if strings.HasPrefix(l, "go_memstats_") && !strings.Contains(l, "#") || strings.HasPrefix(l, "go_goroutines") {
						fmt.Println("   ", l)
					}
				}
			}
		}
		var rec *perfRecording
		if o.perf != "" {
			if rec, err = startPerf(o.perf, fmt.Sprintf("%s-%d", filepath.Base(o.svcreg), n), srv.cmd.Process.Pid); err != nil {
				return err
			}
		}
		cpu0, err := srv.cpu()
		if err != nil {
			return err
		}
		sched0 := schedStats(srv.cmd.Process.Pid)
		own0 := ownCPU()
		ownSched0 := schedStats(os.Getpid())
		sent := time.Now()
		resp, data, err := s.request(ctx, newClient(1), "PUT", "/configuration/fanout-"+strconv.Itoa(round), []byte(`{"value":"x"}`))
		if err != nil || resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("write the event: %v %s", err, data)
		}
		wg.Wait()
		own1 := ownCPU()
		ownSched1 := schedStats(os.Getpid())
		sched1 := schedStats(srv.cmd.Process.Pid)
		rec.stop()
		cpu1, err := srv.cpu()
		if err != nil {
			return err
		}
		select {
		case err := <-errs:
			return err
		default:
		}
		fmt.Printf("  %6d waiters (%s clients): RSS %.1f MB (%.1f KB per waiter)   fan-out %s   server CPU %-6s clients' CPU %s\n",
			n, o.client, rss, (rss-idle)*1024/float64(n), percentiles(received, sent), cpu1-cpu0, (own1 - own0).Round(time.Millisecond))
		if !slices.Contains(arrived, time.Time{}) {
			fmt.Printf("  %6d waiters, arrival at the clients' sockets: %s\n", n, percentiles(arrived, sent))
		}
		if sched0.ok && sched1.ok && ownSched0.ok && ownSched1.ok {
			fmt.Printf("  %6d waiters, scheduler: server ran %s and waited for a core %s, clients ran %s and waited %s\n", n,
				(sched1.run - sched0.run).Round(time.Millisecond), (sched1.wait - sched0.wait).Round(time.Millisecond),
				(ownSched1.run - ownSched0.run).Round(time.Millisecond), (ownSched1.wait - ownSched0.wait).Round(time.Millisecond))
		}
		client.CloseIdleConnections()
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	return nil
}

// percentiles are the min, p50, p99 and max of times since start.
func percentiles(times []time.Time, start time.Time) string {
	lat := make([]time.Duration, len(times))
	for i, t := range times {
		lat[i] = t.Sub(start)
	}
	slices.Sort(lat)
	n := len(lat)
	return fmt.Sprintf("min %-10s p50 %-10s p99 %-10s max %-10s", lat[0].Round(time.Microsecond), lat[n/2].Round(time.Microsecond), lat[n*99/100].Round(time.Microsecond), lat[n-1].Round(time.Microsecond))
}

// hasFlag reports whether svcreg server's usage mentions flag (an older
// binary, measured for comparison, may not have it).
func hasFlag(svcreg, flag string) bool {
	out, _ := exec.Command(svcreg, "server", "--help").CombinedOutput()
	return bytes.Contains(out, []byte(flag))
}

// rawAnswer is what rawGet read, on the connection it leaves open.
type rawAnswer struct {
	code    int
	body    []byte
	arrived time.Time // when the kernel received the answer's last bytes, if known
	conn    net.Conn
}

// rawGet sends GET path on a connection of its own and reads the answer with
// as little work as an HTTP/1.1 client can do: a status line, headers up to
// Content-Length, the body. The caller closes the connection.
func rawGet(s session, path string) (rawAnswer, error) {
	u, err := url.Parse(s.base + path)
	if err != nil {
		return rawAnswer{}, err
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return rawAnswer{}, err
	}
	a := rawAnswer{conn: c}
	rd := io.Reader(c)
	ac, stamped := withArrival(c)
	if stamped {
		rd = ac
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nX-Auth-Token: " + s.token + "\r\n\r\n"
	a.code, a.body, err = exchange(c, rd, req)
	if stamped {
		a.arrived = ac.arrived
	}
	return a, err
}

// exchange writes req on c and reads the answer from rd: a status line,
// headers up to Content-Length, the body, into one buffer (the body is a
// slice of it), as cheaply as a client can that checks what it reads.
func exchange(c net.Conn, rd io.Reader, req string) (int, []byte, error) {
	if _, err := io.WriteString(c, req); err != nil {
		return 0, nil, err
	}
	buf := make([]byte, 0, 2048)
	end, length := -1, -1
	for end < 0 || len(buf) < end+length {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, len(buf))
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if end < 0 {
			if end = bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
				end += 4
				if length = contentLength(buf[:end]); length < 0 {
					return 0, nil, errors.New("answer without Content-Length")
				}
			}
		}
		if err != nil && (end < 0 || len(buf) < end+length) {
			return 0, nil, err
		}
	}
	status, _, _ := bytes.Cut(buf, []byte("\r\n"))
	f := bytes.Fields(status)
	if len(f) < 2 {
		return 0, nil, fmt.Errorf("bad status line %q", status)
	}
	code, _ := strconv.Atoi(string(f[1]))
	return code, buf[end : end+length], nil
}

// contentLength is the Content-Length of an answer's head, or -1.
func contentLength(head []byte) int {
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if n, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil && n >= 0 {
				return n
			}
		}
	}
	return -1
}

var waitingMetric = regexp.MustCompile(`(?m)^svcreg_longpolls_waiting ([0-9.e+]+)$`)

// waitForWaiters polls /metrics until n long-polls are waiting.
func waitForWaiters(url string, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/metrics")
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := waitingMetric.FindSubmatch(data); m != nil {
				if v, _ := strconv.ParseFloat(string(m[1]), 64); int(v) >= n {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%d long-polls never all waited", n)
}

// schedStat is the time a process's threads ran and waited on a run queue
// (from /proc/<pid>/task/*/schedstat), summed; ok is false where there is no
// such file. A thread that exits takes its figures with it.
type schedStat struct {
	run, wait time.Duration
	ok        bool
}

func schedStats(pid int) schedStat {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var st schedStat
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var run, wait int64
		if _, err := fmt.Sscan(string(data), &run, &wait); err != nil {
			continue
		}
		st.run += time.Duration(run)
		st.wait += time.Duration(wait)
		st.ok = true
	}
	return st
}

// perfRecording is `perf record` of the server and of the load tool itself,
// one file each, for one fan-out.
type perfRecording struct{ cmds []*exec.Cmd }

func startPerf(dir, name string, server int) (*perfRecording, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rec := &perfRecording{}
	for _, p := range []struct {
		who string
		pid int
	}{{"server", server}, {"clients", os.Getpid()}} {
		out := filepath.Join(dir, name+"-"+p.who+".data")
		cmd := exec.Command("perf", "record", "-q", "-g", "-F", "4999", "-p", strconv.Itoa(p.pid), "-o", out)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			rec.stop()
			return nil, fmt.Errorf("perf: %w", err)
		}
		rec.cmds = append(rec.cmds, cmd)
	}
	time.Sleep(2 * time.Second) // perf attaches to every thread
	return rec, nil
}

func (rec *perfRecording) stop() {
	if rec == nil {
		return
	}
	for _, cmd := range rec.cmds {
		cmd.Process.Signal(os.Interrupt)
	}
	for _, cmd := range rec.cmds {
		cmd.Wait()
	}
}
