package main

import (
	"context"
	"fmt"
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

	"github.com/svcreg/svcreg/server"
)

// BenchmarkBcryptAttack measures what unauthenticated password guessing
// costs the other tenants of a real `svcreg server --users` (bcrypt cost
// 10): one tenant's write latency (PUT /configuration) while idle and while
// 16 clients send wrong passwords for a known user as fast as they are
// answered; and how long a wrong password takes for a known user and for an
// unknown one. The sub-benchmarks run the server with its default login
// limits and with some of them off, and, for scale, under a flood of
// GET /healthz (a request that costs no bcrypt) from 16 clients.
// SVCREG_BENCH_BINARY runs that binary instead, without flags (e.g. a build
// from before the limits).
//
//	go test ./cmd/svcreg -run '^$' -bench BcryptAttack -benchtime 1x
func BenchmarkBcryptAttack(b *testing.B) {
	runs := map[string][]string{
		"defaults":          nil,
		"login-limits-off":  {"--login-failures-per-address", "-1", "--login-failures-per-user", "-1", "--bcrypt-concurrency", "64"},
		"address-limit-off": {"--login-failures-per-address", "-1", "--login-failures-per-user", "-1"},
	}
	if bin := os.Getenv("SVCREG_BENCH_BINARY"); bin != "" {
		runs = map[string][]string{"binary": nil}
	}
	for _, name := range []string{"login-limits-off", "address-limit-off", "defaults", "binary"} {
		args, ok := runs[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				bcryptAttack(b, args, "/v2.0/tokens")
			}
		})
	}
	b.Run("healthz-flood", func(b *testing.B) {
		for b.Loop() {
			bcryptAttack(b, nil, "/healthz")
		}
	})
}

// anyListenLog finds the server's URL in its log: the benchmark may run
// an older binary (SVCREG_BENCH_BINARY, for a baseline) that has no
// --ready-file.
var anyListenLog = regexp.MustCompile(`url=(https?://[0-9.:]+)`)

// bcryptAttack runs the server with args and measures; the 16 attackers
// send wrong passwords (target /v2.0/tokens) or GET target.
func bcryptAttack(b *testing.B, args []string, target string) {
	dir := b.TempDir()
	hash, err := server.HashPassword("the-right-password")
	if err != nil {
		b.Fatal(err)
	}
	users := filepath.Join(dir, "users.toml")
	content := fmt.Sprintf("[[user]]\nname = \"victim\"\ntenant = \"801\"\npassword_hash = %q\n\n[[user]]\nname = \"writer\"\ntenant = \"802\"\napi_key = \"writer-key\"\n", hash)
	if err := os.WriteFile(users, []byte(content), 0o600); err != nil {
		b.Fatal(err)
	}
	args = append([]string{"server", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--users", users}, args...)
	var cmd *exec.Cmd
	if bin := os.Getenv("SVCREG_BENCH_BINARY"); bin != "" {
		cmd = exec.Command(bin, args...)
	} else {
		cmd = exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), execEnv+"=1")
	}
	base, _, stop := startBenchServer(b, cmd)
	defer stop()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	code, token := tokenStatus(b, hc, base, "writer", "writer-key")
	if code != 200 {
		b.Fatalf("writer login: %d", code)
	}

	write := func(i int) time.Duration {
		body := fmt.Sprintf(`{"value":"v%d"}`, i)
		req, _ := http.NewRequest("PUT", base+"/v1.0/802/configuration/bench-key", strings.NewReader(body))
		req.Header.Set("X-Auth-Token", token)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := hc.Do(req)
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 && resp.StatusCode != 200 {
			b.Fatalf("write: %d", resp.StatusCode)
		}
		return d
	}
	writes := func(n int) []time.Duration {
		ds := make([]time.Duration, n)
		for i := range ds {
			ds[i] = write(i)
			time.Sleep(5 * time.Millisecond)
		}
		return ds
	}
	login := func(user string) (int, time.Duration) {
		body := fmt.Sprintf(`{"auth":{"passwordCredentials":{"username":%q,"password":"wrong"}}}`, user)
		start := time.Now()
		resp, err := hc.Post(base+"/v2.0/tokens", "application/json", strings.NewReader(body))
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, d
	}

	// Wrong passwords, known user vs unknown user, alternating: 20 failures,
	// within the default 30 a minute from one address.
	var known, unknown []time.Duration
	for range 10 {
		if c, d := login("victim"); c == 401 {
			known = append(known, d)
		}
		if c, d := login("nobody"); c == 401 {
			unknown = append(unknown, d)
		}
	}

	idle := writes(100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var answered, refused atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code := 0
				if target == "/v2.0/tokens" {
					code, _ = login("victim")
				} else if resp, err := hc.Get(base + target); err == nil {
					resp.Body.Close()
					code = resp.StatusCode
				}
				if code == 401 {
					answered.Add(1)
				} else {
					refused.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second) // let the attack reach its pace
	start := time.Now()
	attacked := writes(100)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()

	b.ReportMetric(ms(median(idle)), "write-p50-idle-ms")
	b.ReportMetric(ms(median(attacked)), "write-p50-attack-ms")
	b.ReportMetric(float64(median(attacked))/float64(median(idle)), "attack/idle")
	b.ReportMetric(float64(answered.Load())/(elapsed+time.Second).Seconds(), "checked-guesses/s")
	b.ReportMetric(float64(refused.Load())/(elapsed+time.Second).Seconds(), "other-answers/s")
	if len(known) > 0 && len(unknown) > 0 {
		b.ReportMetric(ms(median(known)), "login-known-ms")
		b.ReportMetric(ms(median(unknown)), "login-unknown-ms")
	}
}

// startBenchServer starts cmd, a svcreg server, and returns its URL once
// it listens, its output, and what stops it.
func startBenchServer(b *testing.B, cmd *exec.Cmd) (string, *output, func()) {
	out := newOutput()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "svcreg server listening") {
		if time.Now().After(deadline) {
			stop()
			b.Fatalf("server did not start:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return anyListenLog.FindStringSubmatch(out.String())[1], out, stop
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
