// Command loadclients is the end-to-end tests' load: clients sending POST
// requests (which Go's client never retries, so every failure is seen) on
// keep-alive connections to a load balancer, until its standard input
// closes. Then it prints what they saw as JSON: requests answered (OK: a
// 200 whose body names an instance, "id@port"), failed (Failed, with up to
// five errors in Errs), and connections the other side closed (Cut).
//
//	loadclients -url http://127.0.0.1:8080/ -clients 100 -pause 200ms
//
// It runs in a process of its own, as clients do, and without the race
// detector: sharing the test's process, its goroutines would delay the
// backends' first requests, which the tests measure, and instrumented it
// took several seconds of CPU per test.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "where to send the requests")
	clients := flag.Int("clients", 1, "clients, each on a keep-alive connection of its own")
	pause := flag.Duration("pause", 0, "how long each client pauses after each request")
	flag.Parse()
	if *url == "" || *clients < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: loadclients -url URL [-clients N] [-pause D]")
		os.Exit(2)
	}
	var (
		ok, failed, cut atomic.Int64
		mu              sync.Mutex
		errs            []string
		wg              sync.WaitGroup
		stop            = make(chan struct{})
	)
	for range *clients {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &watchedConn{Conn: c, closed: &cut}, nil
		}}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				case <-time.After(*pause):
				}
				resp, err := client.Post(*url, "text/plain", strings.NewReader("ping"))
				if err == nil {
					body, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if rerr != nil {
						err = rerr
					} else if resp.StatusCode != 200 || !strings.Contains(string(body), "@") {
						err = fmt.Errorf("status %d: %.80s", resp.StatusCode, body)
					}
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	io.Copy(io.Discard, os.Stdin)
	close(stop)
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(struct {
		OK, Failed, Cut int64
		Errs            []string
	}{ok.Load(), failed.Load(), cut.Load(), errs})
}

// watchedConn counts a connection the other side closed (or broke).
type watchedConn struct {
	net.Conn
	closed *atomic.Int64
	once   sync.Once
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		c.once.Do(func() { c.closed.Add(1) })
	}
	return n, err
}
