package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkUIConfig measures the dashboard's Configuration view (and its
// Events and Limits views) of an account with many values in deep
// namespaces, in chromium, while values change five times a second (the
// Events view then holds the last hour's 10 pages of 1000 events):
//
//   - ms-to-show: from opening the page to the view shown,
//     sign-in included;
//   - busy-ms/s: the page's long tasks (50 ms or more) per second, over
//     15 s of watching;
//   - GETs/s: the page's requests the account's daily limit counts, per
//     second, over the same 15 s.
//
// Run it with
//
//	CI=true go test -run '^$' -bench UIConfig -benchtime 1x ./cmd/svcreg/
func BenchmarkUIConfig(b *testing.B) {
	for _, c := range []struct {
		view string
		n    int
	}{{"config", 1000}, {"config", 20000}, {"events", 20000}, {"limits", 20000}} {
		view, n := c.view, c.n
		b.Run(view+"/values="+strconv.Itoa(n), func(b *testing.B) {
			srv := startPagesServer(b, "--config-limit", strconv.Itoa(n))
			a := login(b, srv.url, "dev")
			setMany(b, a, n)
			stop := make(chan struct{})
			var load sync.WaitGroup
			load.Go(func() { changeConfig(a, n, 5, stop) })
			defer func() { close(stop); load.Wait() }()

			br := pagesBrowser(b)
			var toShow, busy, gets float64
			b.ResetTimer()
			for range b.N {
				start := br.signInAfresh(srv.url)
				br.do(chromedp.Click(chromedp.CSS(`#nav a[data-view="` + view + `"]`)))
				br.wait("the view shown", map[string]string{
					"config": `document.getElementById('cfg-count').textContent === '` + strconv.Itoa(n) + `' && document.querySelectorAll('#cfg-tree li.leaf').length === ` + strconv.Itoa(n),
					"events": `document.querySelectorAll('#ev-list li').length >= 500`,
					"limits": `document.querySelectorAll('#limits .figure').length >= 3`,
				}[view])
				toShow += float64(time.Since(start).Milliseconds())
				br.watchLongTasks()
				before := rateUsed(b, a)
				const watch = 15 * time.Second
				time.Sleep(watch)
				gets += float64(rateUsed(b, a)-before-1) / watch.Seconds()
				busy += br.longTasks() / watch.Seconds()
				br.do(chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`))
			}
			b.StopTimer()
			b.ReportMetric(toShow/float64(b.N), "ms-to-show")
			b.ReportMetric(busy/float64(b.N), "busy-ms/s")
			b.ReportMetric(gets/float64(b.N), "GETs/s")
		})
	}
}

// rateUsed is the GETs the account made in its rate window (the /limits
// read included).
func rateUsed(t testing.TB, a *api) int {
	t.Helper()
	var l struct {
		Rate map[string]struct{ Used int }
	}
	if err := json.Unmarshal(must(t, a, "GET", "/limits", nil, 200), &l); err != nil {
		t.Fatal(err)
	}
	return l.Rate["/.*"].Used
}

// configID is the id of the i-th value: five levels of namespaces.
func configID(i int) string {
	return fmt.Sprintf("/region-%d/zone-%d/cluster-%d/app-%d/key-%05d", i%4, i/4%5, i/20%10, i/200%10, i)
}

// setMany sets n configuration values.
func setMany(b *testing.B, a *api, n int) {
	b.Helper()
	inParallel(b, n, func(i int) error {
		code, body, err := a.do("PUT", "/configuration/"+configID(i), map[string]string{"value": "value-" + strconv.Itoa(i)})
		if err == nil && code != 204 {
			err = fmt.Errorf("set: %d %s", code, body)
		}
		return err
	})
}

// changeConfig changes perSecond values a second until stop.
func changeConfig(a *api, n, perSecond int, stop chan struct{}) {
	everyTick(time.Second/time.Duration(perSecond), stop, func(i int) {
		a.do("PUT", "/configuration/"+configID(i*7919%n), map[string]string{"value": "changed-" + strconv.Itoa(i)})
	})
}
