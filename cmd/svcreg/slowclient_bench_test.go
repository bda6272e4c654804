package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkSlowClientAttack measures what clients that hold connections
// without finishing them cost another account of a real `svcreg server
// --dev` run with a limit of 600 descriptors: the share of its
// GET /services requests, each on a new connection and given 3 s, that
// fail, and their median, while one address (another loopback address
// than the account's) opens 80 connections a second that
//
//   - slow-headers: send a request's headers a line a second;
//   - slow-bodies: send a POST /v2.0/tokens body a byte a second;
//
// and with no attack ("none"), for scale. (Connections that do not read
// their answers are bounded the same way, but filling descriptors with
// them takes megabytes of socket buffers each, the server's send buffer
// growing to take the answers: TestUnreadAnswersCannotTakeEveryConnection
// shows them with a server of a few connections.) Each run attacks for 10 s before
// it measures for 10 s. SVCREG_BENCH_BINARY runs that binary instead (a
// build from before the bounds, for a baseline).
//
//	go test ./cmd/svcreg -run '^$' -bench SlowClientAttack -benchtime 1x
func BenchmarkSlowClientAttack(b *testing.B) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		b.Fatal("the benchmark lowers the server's descriptor limit with prlimit (util-linux)")
	}
	for _, mode := range []string{"none", "slow-headers", "slow-bodies"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				slowClientAttack(b, mode)
			}
		})
	}
}

func slowClientAttack(b *testing.B, mode string) {
	args := []string{"--nofile=600:600"}
	if bin := os.Getenv("SVCREG_BENCH_BINARY"); bin != "" {
		args = append(args, bin)
	} else {
		args = append(args, os.Args[0])
	}
	args = append(args, "server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(b.TempDir(), "data"))
	cmd := exec.Command("prlimit", args...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	base, out, stopServer := startBenchServer(b, cmd)
	defer stopServer()
	addr := strings.TrimPrefix(base, "http://")
	victim := login(b, base, "victim")
	tenant, token := victim.tenant, victim.token

	stop := make(chan struct{})
	var wg sync.WaitGroup
	if mode != "none" {
		wg.Go(func() {
			tick := time.NewTicker(time.Second / 80)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					wg.Go(func() { slowClient(mode, addr, stop) })
				}
			}
		})
		time.Sleep(10 * time.Second)
	}
	var lat []time.Duration
	failed, sent := 0, 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		sent++
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second}
		req, _ := http.NewRequest("GET", base+"/v1.0/"+tenant+"/services", nil)
		req.Header.Set("X-Auth-Token", token)
		start := time.Now()
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			failed++
			continue
		}
		lat = append(lat, time.Since(start))
	}
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(failed)/float64(sent), "failed/request")
	if len(lat) > 0 {
		b.ReportMetric(ms(median(lat)), "p50-ms")
	}
	b.ReportMetric(float64(strings.Count(out.String(), "accept failed")), "accept-log-lines")
}

// slowClient holds one connection from 127.0.0.2 as mode says until stop
// or the server closes it.
func slowClient(mode, addr string, stop <-chan struct{}) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	go func() { <-stop; c.Close() }()
	var start, drip string
	switch mode {
	case "slow-headers":
		start, drip = "GET /healthz HTTP/1.1\r\nHost: x\r\n", "X: y\r\n"
	case "slow-bodies":
		start, drip = "POST /v2.0/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{", " "
	}
	if _, err := io.WriteString(c, start); err != nil {
		return
	}
	for range 60 {
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
		if _, err := io.WriteString(c, drip); err != nil {
			return
		}
	}
}
