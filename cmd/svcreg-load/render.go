package main

import (
	"context"
	"crypto/sha256"
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

// The render benchmark: a real `svcreg server` holding N services and a
// real `svcreg template` rendering one line per service with the default
// [wait]; a burst of changes at a fixed rate; the renderer's CPU time
// (from /proc) over the burst, its installs, the lag from the last change
// to its installed file, and its RSS. With --baseline, other svcreg
// binaries' renderers run the same trials, interleaved, against the same
// server binary and the same data.

// renderTemplate renders one line per service, like a confd template
// writing an upstream list.
const renderTemplate = `{{ range services }}server {{ .ID }} {{ .Metadata.ip }}:{{ .Metadata.port }} weight={{ .Metadata.weight }}
{{ end }}`

type renderRun struct {
	cpu      float64 // renderer CPU seconds from the first change to the last one installed
	installs float64
	lag      time.Duration // last change acknowledged -> installed
	rssMB    float64
	hwmMB    float64
	sum      [32]byte // the final file
}

type renderer struct{ name, bin string }

func benchRender(o options) error {
	counts, err := parseCounts("--services", o.services)
	if err != nil {
		return err
	}
	if o.rate <= 0 || o.burst <= 0 || o.trials < 1 {
		return errors.New("--rate, --burst and --trials must be positive")
	}
	renderers := []renderer{{"svcreg", o.svcreg}}
	if o.baseline != "" {
		for _, bin := range strings.Split(o.baseline, ",") {
			renderers = append(renderers, renderer{filepath.Base(bin), bin})
		}
	}
	changes := int(o.rate * o.burst.Seconds())
	fmt.Printf("renderer: %d changes at %.0f/s (%s) on N preloaded services, default [wait] 100ms:2s, %d trial(s)\n", changes, o.rate, o.burst, o.trials)
	for _, r := range renderers {
		fmt.Printf("  %-16s = %s\n", r.name, r.bin)
	}

	data := map[int]string{}
	defer func() {
		for _, dir := range data {
			os.RemoveAll(dir)
		}
	}()
	for _, n := range counts {
		dir, err := preload(o, n, changes)
		if err != nil {
			return fmt.Errorf("preload %d services: %w", n, err)
		}
		data[n] = dir
	}

	runs := map[string][]renderRun{}
	key := func(n int, r renderer) string { return fmt.Sprint(n, r.name) }
	for trial := range o.trials {
		for _, n := range counts {
			// Rotate the order from trial to trial.
			order := slices.Concat(renderers[trial%len(renderers):], renderers[:trial%len(renderers)])
			for _, r := range order {
				run, err := runRenderer(o, r, n, data[n], changes)
				if err != nil {
					return fmt.Errorf("%s, %d services: %w", r.name, n, err)
				}
				runs[key(n, r)] = append(runs[key(n, r)], run)
				fmt.Printf("  trial %d  N=%-6d %-16s  CPU %6.2f s (%5.1f µs/change)  installs %3.0f  last-change lag %-8s  RSS %5.1f MB (peak %5.1f)\n",
					trial+1, n, r.name, run.cpu, run.cpu/float64(changes)*1e6, run.installs, run.lag.Round(time.Millisecond), run.rssMB, run.hwmMB)
			}
		}
	}

	fmt.Printf("\nmedians over %d trial(s)\n", o.trials)
	fmt.Printf("| N | renderer | CPU s | µs/change | installs | last-change lag | RSS MB |\n|---|---|---|---|---|---|---|\n")
	for _, n := range counts {
		for _, r := range renderers {
			rs := runs[key(n, r)]
			fmt.Printf("| %d | %s | %.2f | %.0f | %.0f | %s | %.1f |\n", n, r.name,
				median(rs, func(r renderRun) float64 { return r.cpu }),
				median(rs, func(r renderRun) float64 { return r.cpu })/float64(changes)*1e6,
				median(rs, func(r renderRun) float64 { return r.installs }),
				time.Duration(median(rs, func(r renderRun) float64 { return float64(r.lag) })).Round(time.Millisecond),
				median(rs, func(r renderRun) float64 { return r.rssMB }))
		}
	}
	for _, n := range counts {
		first := runs[key(n, renderers[0])][0].sum
		for _, r := range renderers {
			for _, run := range runs[key(n, r)] {
				if run.sum != first {
					return fmt.Errorf("N=%d: the renderers' final files differ", n)
				}
			}
		}
	}
	fmt.Println("final files: byte-identical across renderers and trials")
	if len(counts) > 1 {
		lo, hi := counts[0], counts[len(counts)-1]
		for _, r := range renderers {
			a := median(runs[key(lo, r)], func(r renderRun) float64 { return r.cpu })
			b := median(runs[key(hi, r)], func(r renderRun) float64 { return r.cpu })
			fmt.Printf("%s: CPU per change at N=%d / at N=%d = %.2f\n", r.name, hi, lo, b/a)
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

// preload starts a server on a new data directory, creates n services
// (room for the burst's) and stops it; every run starts from a copy.
func preload(o options, n, changes int) (string, error) {
	dir, err := os.MkdirTemp("", "svcreg-load-render-")
	if err != nil {
		return "", err
	}
	srv, err := startChild(o.svcreg, "server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--service-limit", strconv.Itoa(n+changes+100))
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
	err = parallel(32, n, func(i int) error {
		return s.want(client, "POST", "/services", serviceBody(fmt.Sprintf("svc-%06d", i), i, "1"), http.StatusCreated)
	})
	if err != nil {
		return "", err
	}
	fmt.Printf("  preloaded %d services in %s\n", n, time.Since(start).Round(time.Millisecond))
	return dir, nil
}

func serviceBody(id string, i int, weight string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"tags":["www"],"heartbeat_timeout":120,"metadata":{"ip":"10.%d.%d.%d","port":"8080","weight":%q}}`,
		id, i>>16&255, i>>8&255, i&255, weight)
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

// runRenderer runs one trial: a server on a copy of the preloaded data,
// the renderer r synced to it, then the burst.
func runRenderer(o options, r renderer, n int, data string, changes int) (renderRun, error) {
	var run renderRun
	dir, err := os.MkdirTemp("", "svcreg-load-render-run-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(dir)
	if err := os.CopyFS(dir, os.DirFS(data)); err != nil {
		return run, err
	}
	srv, err := startChild(o.svcreg, "server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	if err != nil {
		return run, err
	}
	defer srv.stop()
	s, err := login(srv.url, "load-render")
	if err != nil {
		return run, err
	}
	src, dst := filepath.Join(dir, "lines.tmpl"), filepath.Join(dir, "lines.conf")
	if err := os.WriteFile(src, []byte(renderTemplate), 0o644); err != nil {
		return run, err
	}
	tmpl, err := startChild(r.bin, "template", "--template", src+":"+dst, "--listen", "127.0.0.1:0",
		"--url", srv.url+"/v1.0", "--username", "load-render", "--api-key", "dev")
	if err != nil {
		return run, err
	}
	defer tmpl.stop()
	if _, err := waitForFile(dst, 2*time.Minute, func(b []byte) bool { return countLines(b) == n }); err != nil {
		return run, fmt.Errorf("the first render: %w", err)
	}
	time.Sleep(time.Second) // let the first render's garbage be collected
	cpu0, err := tmpl.cpuSeconds()
	if err != nil {
		return run, err
	}
	inst0, err := metric(tmpl.url, "svcreg_template_installs_total")
	if err != nil {
		return run, err
	}

	// The burst: joins of new services, each removed again 100 joins
	// later, and metadata updates of preloaded ones, at a fixed rate.
	client := newClient(16)
	jobs := make(chan int)
	burstErr := make(chan error, 1)
	go func() {
		burstErr <- workerPool(16, jobs, func(i int) error {
			k := i / 2
			switch {
			case i%2 == 0:
				return s.want(client, "POST", "/services", serviceBody(fmt.Sprintf("burst-%06d", k), n+k, "1"), http.StatusCreated)
			case k >= 100:
				return s.want(client, "DELETE", fmt.Sprintf("/services/burst-%06d", k-100), nil, http.StatusNoContent)
			default:
				return s.want(client, "PUT", fmt.Sprintf("/services/svc-%06d", k%n), []byte(fmt.Sprintf(`{"metadata":{"ip":"10.9.9.9","port":"8080","weight":"%d"}}`, i)), http.StatusNoContent)
			}
		})
	}()
	interval := time.Duration(float64(time.Second) / o.rate)
	start := time.Now()
	for i := range changes {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		jobs <- i
	}
	close(jobs)
	if err := <-burstErr; err != nil {
		return run, err
	}
	// The last change, sent once all others are acknowledged.
	if err := s.want(client, "POST", "/services", serviceBody("zz-last", n+changes, "1"), http.StatusCreated); err != nil {
		return run, err
	}
	acked := time.Now()
	final, err := waitForFile(dst, time.Minute, func(b []byte) bool { return strings.Contains(string(b), "server zz-last ") })
	if err != nil {
		return run, fmt.Errorf("the last change: %w", err)
	}
	run.lag = time.Since(acked)
	cpu1, err := tmpl.cpuSeconds()
	if err != nil {
		return run, err
	}
	inst1, err := metric(tmpl.url, "svcreg_template_installs_total")
	if err != nil {
		return run, err
	}
	run.cpu, run.installs, run.sum = cpu1-cpu0, inst1-inst0, sha256.Sum256(final)
	if run.rssMB, err = tmpl.statusMB("VmRSS:"); err != nil {
		return run, err
	}
	run.hwmMB, err = tmpl.statusMB("VmHWM:")
	return run, err
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

// cpuSeconds is the child's user and system CPU time, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func (c *child) cpuSeconds() (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; count from after it.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil
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
