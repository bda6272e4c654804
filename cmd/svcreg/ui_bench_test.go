package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkUIServices measures the dashboard of an account with many
// services, in chromium, while the services heartbeat (each about once a
// minute) and one of them changes every second:
//
//   - ms-to-live: from opening the page to the services listed and the
//     feed live, sign-in included;
//   - ms/keystroke: a keystroke in the filter, until the page is laid out
//     again (the mean of typing "web-1", "web-12", "web-123", "web-1234"
//     and clearing it);
//   - busy-ms/s: the page's long tasks (50 ms or more: what a user feels
//     as a page that does not answer) per second, over 15 s of watching.
//
// Run it with
//
//	CI=true go test -run '^$' -bench UIServices -benchtime 1x ./cmd/svcreg/
func BenchmarkUIServices(b *testing.B) {
	for _, n := range []int{1000, 10000, 20000} {
		b.Run("services="+strconv.Itoa(n), func(b *testing.B) {
			srv := startPagesServer(b, "--service-limit", strconv.Itoa(n))
			a := login(b, srv.url, "dev")
			tokens := createMany(b, a, n)
			stop := make(chan struct{})
			var load sync.WaitGroup
			load.Go(func() { heartbeatAll(a, tokens, time.Minute, stop) })
			load.Go(func() { changeEverySecond(a, n, stop) })
			defer func() { close(stop); load.Wait() }()

			br := pagesBrowser(b)
			var toLive, keystroke, busy float64
			b.ResetTimer()
			for range b.N {
				start := br.signInAfresh(srv.url)
				br.wait("the services listed", `document.getElementById('svc-count').textContent === '`+strconv.Itoa(n)+`'`)
				toLive += float64(time.Since(start).Milliseconds())
				ms, err := strconv.ParseFloat(br.text(`(() => {
					const e = document.getElementById('svc-filter'), t0 = performance.now();
					const typed = ['web-1', 'web-12', 'web-123', 'web-1234', ''];
					for (const v of typed) {
						e.value = v;
						e.dispatchEvent(new Event('input'));
						document.body.offsetHeight;
					}
					return String((performance.now() - t0) / typed.length);
				})()`), 64)
				if err != nil {
					b.Fatal(err)
				}
				keystroke += ms
				br.watchLongTasks()
				const watch = 15 * time.Second
				time.Sleep(watch)
				busy += br.longTasks() / watch.Seconds()
				br.do(chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`))
			}
			b.StopTimer()
			b.ReportMetric(toLive/float64(b.N), "ms-to-live")
			b.ReportMetric(keystroke/float64(b.N), "ms/keystroke")
			b.ReportMetric(busy/float64(b.N), "busy-ms/s")
		})
	}
}

// startPagesServer starts `svcreg server --dev` for a benchmark of the
// pages: with args, and no bound on an account's writes or GETs.
func startPagesServer(b *testing.B, args ...string) *serverProcess {
	b.Helper()
	return startServerProcess(b, append([]string{"--data-dir", b.TempDir(),
		"--write-burst", "100000", "--write-rate", "100000", "--rate-limit", "100000000"}, args...)...)
}

// pagesBrowser is a browser for a benchmark of the pages, which waits
// for large pages as long as they take.
func pagesBrowser(b *testing.B) *browser {
	b.Helper()
	br := newBrowserFor(b, 15*time.Minute)
	br.patience = 5 * time.Minute
	return br
}

// signInAfresh opens the dashboard anew, signs in and waits for the live
// feed; it returns when it started.
func (br *browser) signInAfresh(base string) time.Time {
	br.t.Helper()
	br.do(chromedp.Navigate("about:blank"))
	start := time.Now()
	br.signIn(base, "dev", "dev")
	return start
}

// watchLongTasks starts counting the milliseconds of the page's long
// tasks (50 ms or more).
func (br *browser) watchLongTasks() {
	br.t.Helper()
	br.do(chromedp.Evaluate[chromedp.Void](`window.busy = 0; new PerformanceObserver(l => {
		for (const e of l.getEntries()) window.busy += e.duration;
	}).observe({type: 'longtask'})`))
}

// longTasks is the milliseconds of the page's long tasks since
// watchLongTasks.
func (br *browser) longTasks() float64 {
	br.t.Helper()
	ms, err := strconv.ParseFloat(br.text(`String(window.busy)`), 64)
	if err != nil {
		br.t.Fatal(err)
	}
	return ms
}

// createMany creates n services (web-00000, …) with a few tags and
// metadata each, and returns their heartbeat tokens.
func createMany(b *testing.B, a *api, n int) []string {
	b.Helper()
	tokens := make([]string, n)
	inParallel(b, n, func(i int) error {
		code, body, err := a.do("POST", "/services", map[string]any{
			"id": fmt.Sprintf("web-%05d", i), "heartbeat_timeout": 120,
			"tags": []string{"www", fmt.Sprintf("zone-%d", i%8), fmt.Sprintf("v%d", i%20)},
			"metadata": map[string]string{
				"ip": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "port": "8080", "version": fmt.Sprintf("1.%d", i%20),
			},
		})
		var out struct{ Token string }
		if err == nil && code != 201 {
			err = fmt.Errorf("create: %d %s", code, body)
		}
		if err == nil {
			err = json.Unmarshal(body, &out)
		}
		tokens[i] = out.Token
		return err
	})
	return tokens
}

// inParallel calls do for 0 to n-1, 16 at a time, and fails b with the
// errors it returned.
func inParallel(b *testing.B, n int, do func(i int) error) {
	b.Helper()
	errs := make([]error, 16)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += 16 {
				errs[w] = do(i)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}

// everyTick calls do every interval, with 0, 1, 2, …, until stop.
func everyTick(interval time.Duration, stop chan struct{}, do func(i int)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		do(i)
	}
}

// heartbeatAll heartbeats every service about once an interval, 8 at a
// time, until stop.
func heartbeatAll(a *api, tokens []string, interval time.Duration, stop chan struct{}) {
	everyTick(interval/time.Duration(len(tokens))*8, stop, func(round int) {
		var wg sync.WaitGroup
		for j := round * 8; j < round*8+8; j++ {
			k := j % len(tokens)
			wg.Go(func() {
				_, body, err := a.do("POST", fmt.Sprintf("/services/web-%05d/heartbeat", k), map[string]string{"token": tokens[k]})
				var out struct{ Token string }
				if err == nil && json.Unmarshal(body, &out) == nil && out.Token != "" {
					tokens[k] = out.Token
				}
			})
		}
		wg.Wait()
	})
}

// changeEverySecond changes one service's metadata a second until stop.
func changeEverySecond(a *api, n int, stop chan struct{}) {
	everyTick(time.Second, stop, func(i int) {
		a.do("PUT", fmt.Sprintf("/services/web-%05d", i*7919%n), map[string]any{
			"metadata": map[string]string{"ip": "10.9.9.9", "port": "8080", "version": "2." + strconv.Itoa(i)},
		})
	})
}
