package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The render benchmark: a registry holding N services and a renderer
// writing one line per service; a burst of changes at a fixed rate; the
// renderer's CPU time (from /proc) over the burst, its installs, the lag
// from the last change to its installed file, and its RSS. The renderers
// are `svcreg template` (default [wait]) on a real `svcreg server`, other
// svcreg binaries' renderers with --baseline, and with --confd confd
// watching a real etcd that holds the same services, one key each; all run
// the same trials, interleaved, and their final files must hold the same
// lines.

// renderTemplate renders one line per service, like a confd template
// writing an upstream list.
const renderTemplate = `{{ range services }}server {{ .ID }} {{ .Metadata.ip }}:{{ .Metadata.port }} weight={{ .Metadata.weight }}
{{ end }}`

// renderStep is one service count of the benchmark and the burst it gets.
type renderStep struct {
	services, changes int
	rate              float64 // changes per second
}

// parseRenderPlan pairs the flags' lists: one rate and one change count
// per service count, or one for all; no change counts means rate × burst.
func parseRenderPlan(services, rates, changes string, burst time.Duration) ([]renderStep, error) {
	counts, err := parseCounts("--services", services)
	if err != nil {
		return nil, err
	}
	var rs []float64
	for _, f := range strings.Split(rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("--rate: %q is not a positive rate", f)
		}
		rs = append(rs, r)
	}
	var cs []int
	if strings.TrimSpace(changes) != "" {
		if cs, err = parseCounts("--changes", changes); err != nil {
			return nil, err
		}
	}
	if len(rs) != 1 && len(rs) != len(counts) {
		return nil, fmt.Errorf("--rate: give one rate, or one per --services count (%d)", len(counts))
	}
	if cs != nil && len(cs) != 1 && len(cs) != len(counts) {
		return nil, fmt.Errorf("--changes: give one count, or one per --services count (%d)", len(counts))
	}
	steps := make([]renderStep, len(counts))
	for i, n := range counts {
		s := renderStep{services: n, rate: at(rs, i)}
		if cs != nil {
			s.changes = at(cs, i)
		} else if s.changes = int(s.rate * burst.Seconds()); s.changes < 1 {
			return nil, errors.New("--burst: no change fits in it at --rate")
		}
		steps[i] = s
	}
	return steps, nil
}

// at is list[i], or list's only value.
func at[T any](list []T, i int) T {
	if len(list) == 1 {
		return list[0]
	}
	return list[i]
}

type renderRun struct {
	cpu      float64 // renderer CPU seconds from the first change to the last one installed
	installs float64
	lag      time.Duration // last change acknowledged -> installed
	rssMB    float64
	hwmMB    float64
	final    []byte // the final file
}

// A renderer is one program under test; start brings up, in dir, the
// registry it watches holding the step's preloaded services and the
// renderer synced to it.
type renderer struct {
	name, bin string
	start     func(dir string, step renderStep) (*rendering, error)
}

// rendering is a started renderer and the registry it watches.
type rendering struct {
	proc     *child
	dst      string                  // the file it renders
	apply    func(c change) error    // makes one change in the registry
	installs func() (float64, error) // files installed so far
	stop     func()
}

func benchRender(o options) error {
	steps, err := parseRenderPlan(o.services, o.rate, o.changes, o.burst)
	if err != nil {
		return err
	}
	if o.trials < 1 {
		return errors.New("--trials must be positive")
	}
	if (o.confd == "") != (o.etcd == "") {
		return errors.New("--confd and --etcd go together")
	}
	data := map[int]string{} // the preloaded svcreg data directories
	defer func() {
		for _, dir := range data {
			os.RemoveAll(dir)
		}
	}()
	renderers := []renderer{svcregRenderer("svcreg", o.svcreg, o.svcreg, data)}
	if o.baseline != "" {
		for _, bin := range strings.Split(o.baseline, ",") {
			renderers = append(renderers, svcregRenderer(filepath.Base(bin), bin, o.svcreg, data))
		}
	}
	if o.confd != "" {
		renderers = append(renderers, confdRenderer(o.confd, o.etcd))
	}
	fmt.Printf("renderer: a burst of changes on N preloaded services; svcreg with the default [wait] 100ms:2s; %d trial(s)\n", o.trials)
	for _, s := range steps {
		fmt.Printf("  N=%d: %d changes at %.0f/s\n", s.services, s.changes, s.rate)
	}
	for _, r := range renderers {
		fmt.Printf("  %-16s = %s\n", r.name, r.bin)
	}
	for _, s := range steps {
		dir, err := preload(o, s.services, s.changes)
		if err != nil {
			return fmt.Errorf("preload %d services: %w", s.services, err)
		}
		data[s.services] = dir
	}

	runs := map[string][]renderRun{}
	key := func(n int, r renderer) string { return fmt.Sprint(n, r.name) }
	for trial := range o.trials {
		for _, s := range steps {
			// Rotate the order from trial to trial.
			order := slices.Concat(renderers[trial%len(renderers):], renderers[:trial%len(renderers)])
			for _, r := range order {
				run, err := runRenderer(r, s)
				if err != nil {
					return fmt.Errorf("%s, %d services: %w", r.name, s.services, err)
				}
				runs[key(s.services, r)] = append(runs[key(s.services, r)], run)
				fmt.Printf("  trial %d  N=%-6d %-16s  CPU %6.2f s (%5.1f µs/change)  installs %3.0f  last-change lag %-8s  RSS %5.1f MB (peak %5.1f)  load %s\n",
					trial+1, s.services, r.name, run.cpu, run.cpu/float64(s.changes)*1e6, run.installs, run.lag.Round(time.Millisecond), run.rssMB, run.hwmMB, loadAverage())
			}
		}
	}

	cpu := func(r renderRun) float64 { return r.cpu }
	fmt.Printf("\nmedians over %d trial(s)\n", o.trials)
	fmt.Printf("| N | changes | renderer | CPU s | µs/change | installs | last-change lag | RSS MB (peak) |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range steps {
		for _, r := range renderers {
			rs := runs[key(s.services, r)]
			fmt.Printf("| %d | %d at %.0f/s | %s | %.2f | %.0f | %.0f | %s | %.1f (%.1f) |\n", s.services, s.changes, s.rate, r.name,
				median(rs, cpu), median(rs, cpu)/float64(s.changes)*1e6,
				median(rs, func(r renderRun) float64 { return r.installs }),
				time.Duration(median(rs, func(r renderRun) float64 { return float64(r.lag) })).Round(time.Millisecond),
				median(rs, func(r renderRun) float64 { return r.rssMB }),
				median(rs, func(r renderRun) float64 { return r.hwmMB }))
		}
	}
	for _, s := range steps {
		first := runs[key(s.services, renderers[0])][0].final
		for _, r := range renderers {
			for i, run := range runs[key(s.services, r)] {
				if missing, extra := lineDiff(first, run.final); len(missing)+len(extra) > 0 {
					return fmt.Errorf("with N=%d: %s's final file of trial %d differs from svcreg's: %d line(s) missing, %d extra, e.g. %q",
						s.services, r.name, i+1, len(missing), len(extra), slices.Concat(missing, extra)[0])
				}
			}
		}
	}
	fmt.Println("final files: the same lines across renderers and trials")
	for _, r := range renderers[1:] {
		for _, s := range steps {
			fmt.Printf("N=%d: CPU svcreg / %s = %.3f\n", s.services, r.name,
				median(runs[key(s.services, renderers[0])], cpu)/median(runs[key(s.services, r)], cpu))
		}
	}
	if len(steps) > 1 {
		lo, hi := steps[0], steps[len(steps)-1]
		for _, r := range renderers {
			a := median(runs[key(lo.services, r)], cpu) / float64(lo.changes)
			b := median(runs[key(hi.services, r)], cpu) / float64(hi.changes)
			fmt.Printf("%s: CPU per change at N=%d / at N=%d = %.2f\n", r.name, hi.services, lo.services, b/a)
		}
	}
	return nil
}

// parseCounts parses a flag's comma-separated list of positive counts.
func parseCounts(flag, list string) ([]int, error) {
	var counts []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a count", flag, f)
		}
		counts = append(counts, n)
	}
	return counts, nil
}

func median(rs []renderRun, f func(renderRun) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// A change is one service joining, updated or leaving.
type change struct {
	op   changeOp
	id   string
	meta map[string]string // the service's metadata after a join or update
}

type changeOp int

const (
	join changeOp = iota
	update
	leave
)

// preloaded is the i-th of the n preloaded services.
func preloaded(i int) change {
	return change{join, fmt.Sprintf("svc-%06d", i), serviceMeta(i, "1")}
}

// burstChange is the i-th change of a burst on n preloaded services:
// joins of new services, each removed again 100 joins later, and metadata
// updates of preloaded ones.
func burstChange(i, n int) change {
	k := i / 2
	switch {
	case i%2 == 0:
		return change{join, fmt.Sprintf("burst-%06d", k), serviceMeta(n+k, "1")}
	case k >= 100:
		return change{op: leave, id: fmt.Sprintf("burst-%06d", k-100)}
	}
	return change{update, fmt.Sprintf("svc-%06d", k%n), map[string]string{"ip": "10.9.9.9", "port": "8080", "weight": strconv.Itoa(i)}}
}

// lastChange is the join sent once the burst's changes are acknowledged.
func lastChange(n, changes int) change {
	return change{join, "zz-last", serviceMeta(n+changes, "1")}
}

// serviceMeta gives the i-th service an address of its own.
func serviceMeta(i int, weight string) map[string]string {
	return map[string]string{"ip": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "port": "8080", "weight": weight}
}

// lineDiff returns the lines of a missing from b and those of b not in a,
// counting repeats and ignoring order.
func lineDiff(a, b []byte) (missing, extra []string) {
	count := map[string]int{}
	for l := range strings.Lines(string(a)) {
		count[l]++
	}
	for l := range strings.Lines(string(b)) {
		if count[l] > 0 {
			count[l]--
		} else {
			extra = append(extra, l)
		}
	}
	for l, c := range count {
		for range c {
			missing = append(missing, l)
		}
	}
	slices.Sort(missing)
	return missing, extra
}

// preload starts a server on a new data directory, creates n services
// (room for the burst's) and stops it; every run starts from a copy.
func preload(o options, n, changes int) (_ string, err error) {
	dir, err := os.MkdirTemp("", "svcreg-load-render-")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	srv, err := startChild(o.svcreg, "server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--service-limit", strconv.Itoa(n+changes+100), "--write-rate", "0")
	if err != nil {
		return "", err
	}
	defer srv.stop()
	s, err := login(srv.url, "load-render")
	if err != nil {
		return "", err
	}
	start := time.Now()
	client := newClient(32)
	err = parallel(32, n, func(i int) error { return s.apply(client, preloaded(i)) })
	if err != nil {
		return "", err
	}
	fmt.Printf("  preloaded %d services in %s\n", n, time.Since(start).Round(time.Millisecond))
	return dir, nil
}

// apply makes a change through the registry's API: a join (POST), an
// update of a service's metadata (PUT) or a leave (DELETE).
func (s session) apply(c *http.Client, ch change) error {
	switch ch.op {
	case leave:
		return s.want(c, "DELETE", "/services/"+ch.id, nil, http.StatusNoContent)
	case update:
		body, _ := json.Marshal(map[string]any{"metadata": ch.meta})
		return s.want(c, "PUT", "/services/"+ch.id, body, http.StatusNoContent)
	}
	body, _ := json.Marshal(map[string]any{"id": ch.id, "tags": []string{"www"}, "heartbeat_timeout": 120, "metadata": ch.meta})
	return s.want(c, "POST", "/services", body, http.StatusCreated)
}

// want sends a request and checks its status.
func (s session) want(c *http.Client, method, path string, body []byte, status int) error {
	resp, data, err := s.request(context.Background(), c, method, path, body)
	if err != nil {
		return err
	}
	if resp.StatusCode != status {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return nil
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, f func(i int) error) error {
	jobs := make(chan int)
	go func() {
		for i := range n {
			jobs <- i
		}
		close(jobs)
	}()
	return workerPool(workers, jobs, f)
}

func workerPool(workers int, jobs <-chan int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// runRenderer runs one trial: the renderer started on a registry of the
// step's services, then the burst.
func runRenderer(r renderer, step renderStep) (renderRun, error) {
	var run renderRun
	dir, err := os.MkdirTemp("", "svcreg-load-render-run-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(dir)
	rr, err := r.start(dir, step)
	if err != nil {
		return run, err
	}
	defer rr.stop()
	n := step.services
	if _, err := waitForFile(rr.dst, 2*time.Minute, func(b []byte) bool { return countLines(b) == n }); err != nil {
		return run, fmt.Errorf("the first render: %w", err)
	}
	time.Sleep(time.Second) // let the first render's garbage be collected
	cpu0, err := rr.proc.cpuSeconds()
	if err != nil {
		return run, err
	}
	inst0, err := rr.installs()
	if err != nil {
		return run, err
	}

	jobs := make(chan int)
	burstErr := make(chan error, 1)
	go func() {
		burstErr <- workerPool(16, jobs, func(i int) error { return rr.apply(burstChange(i, n)) })
	}()
	interval := time.Duration(float64(time.Second) / step.rate)
	start := time.Now()
	for i := range step.changes {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		jobs <- i
	}
	close(jobs)
	if err := <-burstErr; err != nil {
		return run, err
	}
	// The last change, sent once all others are acknowledged.
	if err := rr.apply(lastChange(n, step.changes)); err != nil {
		return run, err
	}
	acked := time.Now()
	final, err := waitForFile(rr.dst, time.Minute, func(b []byte) bool { return strings.Contains(string(b), "server zz-last ") })
	if err != nil {
		return run, fmt.Errorf("the last change: %w", err)
	}
	run.lag = time.Since(acked)
	cpu1, err := rr.proc.cpuSeconds()
	if err != nil {
		return run, err
	}
	inst1, err := rr.installs()
	if err != nil {
		return run, err
	}
	run.cpu, run.installs, run.final = cpu1-cpu0, inst1-inst0, final
	if run.rssMB, err = rr.proc.statusMB("VmRSS:"); err != nil {
		return run, err
	}
	run.hwmMB, err = rr.proc.statusMB("VmHWM:")
	return run, err
}

// svcregRenderer is `svcreg template` of the binary bin, with the default
// [wait], on a `svcreg server` (of the binary server) started on a copy of
// the data preloaded for the step.
func svcregRenderer(name, bin, server string, data map[int]string) renderer {
	return renderer{name: name, bin: bin, start: func(dir string, step renderStep) (*rendering, error) {
		if err := os.CopyFS(dir, os.DirFS(data[step.services])); err != nil {
			return nil, err
		}
		// No write rate limit: the burst is faster than a tenant's default.
		srv, err := startChild(server, "server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--write-rate", "0")
		if err != nil {
			return nil, err
		}
		s, err := login(srv.url, "load-render")
		if err != nil {
			srv.stop()
			return nil, err
		}
		src, dst := filepath.Join(dir, "lines.tmpl"), filepath.Join(dir, "lines.conf")
		if err := os.WriteFile(src, []byte(renderTemplate), 0o644); err != nil {
			srv.stop()
			return nil, err
		}
		tmpl, err := startChild(bin, "template", "--template", src+":"+dst, "--listen", "127.0.0.1:0",
			"--url", srv.url+"/v1.0", "--username", "load-render", "--api-key", "dev")
		if err != nil {
			srv.stop()
			return nil, err
		}
		client := newClient(16)
		return &rendering{
			proc:     tmpl,
			dst:      dst,
			apply:    func(c change) error { return s.apply(client, c) },
			installs: func() (float64, error) { return metric(tmpl.url, "svcreg_template_installs_total") },
			stop:     func() { tmpl.stop(); srv.stop() },
		}, nil
	}}
}

// loadAverage is the machine's load average over the last minute, as
// uptime shows it, to print next to figures measured on a shared machine.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func countLines(b []byte) int { return strings.Count(string(b), "\n") }

// waitForFile polls path until done accepts its content.
func waitForFile(path string, timeout time.Duration, done func([]byte) bool) ([]byte, error) {
	var last os.FileInfo
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		fi, err := os.Stat(path)
		if err != nil || last != nil && os.SameFile(fi, last) && fi.ModTime().Equal(last.ModTime()) && fi.Size() == last.Size() {
			continue
		}
		last = fi
		if b, err := os.ReadFile(path); err == nil && done(b) {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s not rendered within %s", path, timeout)
}

// cpuSeconds is cpu in seconds.
func (c *child) cpuSeconds() (float64, error) {
	d, err := c.cpu()
	return d.Seconds(), err
}

// statusMB reads a kB field of /proc/<pid>/status, in MB.
func (c *child) statusMB(field string) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// metric reads an unlabelled (or summed) sample from a /metrics page.
func metric(url, name string) (float64, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? ([0-9.e+]+)$`)
	sum := 0.0
	for _, m := range re.FindAllSubmatch(data, -1) {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		sum += v
	}
	return sum, nil
}
