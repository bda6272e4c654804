package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/svcreg/svcreg/internal/freeport"
	"github.com/svcreg/svcreg/internal/testprog"
)

// --ready-file holds the base URL of the server once it listens, so that
// a script started with --listen 127.0.0.1:0 learns the port; the file
// goes when the server stops.
func TestServerReadyFile(t *testing.T) {
	t.Parallel()
	url, ready, stop := devServer(t)
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("GET the ready file's URL %q: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/healthz: %s", url, resp.Status)
	}
	if code, out := stop(); code != exitOK {
		t.Fatalf("exit %d; output:\n%s", code, out)
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Fatalf("the ready file outlives the server: %v", err)
	}
}

// devServer runs svcreg server --dev on a free loopback port, with a ready
// file, until stop is called or the test ends. It returns the server's
// base URL and its ready file; stop returns its exit status and output.
func devServer(t *testing.T) (base, ready string, stop func() (int, string)) {
	t.Helper()
	return devServerWith(t, "--listen", "127.0.0.1:0")
}

// devServerWith is devServer with args (a --listen among them).
func devServerWith(t *testing.T, args ...string) (base, ready string, stop func() (int, string)) {
	t.Helper()
	dir := t.TempDir()
	ready = filepath.Join(dir, "ready")
	ctx, cancel := context.WithCancel(context.Background())
	out := newOutput()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, append([]string{"server", "--dev", "--data-dir", filepath.Join(dir, "data"), "--ready-file", ready}, args...),
			nil, &bytes.Buffer{}, out)
	}()
	var code int
	var once sync.Once
	stop = func() (int, string) {
		once.Do(func() { cancel(); code = <-done })
		return code, out.String()
	}
	t.Cleanup(func() { stop() })
	return waitReadyFile(t, ready, out), ready, stop
}

// A dev server on loopback answers only requests that name it by address
// or localhost: its dev credentials are known to every web page, which
// could otherwise log in through a DNS name pointed at 127.0.0.1.
func TestDevServerRefusesOtherHosts(t *testing.T) {
	t.Parallel()
	base, _, _ := devServer(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(base, "http://"), ":")
	devLoginsByHost(t, base, map[string]int{
		"rebind.attacker.example:" + port: http.StatusMisdirectedRequest,
		"localhost:" + port:               http.StatusOK,
		"127.0.0.1:" + port:               http.StatusOK,
	})
}

// devLoginsByHost logs in as dev at the server at base with each Host of
// want, and wants each answer's status.
func devLoginsByHost(t *testing.T, base string, want map[string]int) {
	t.Helper()
	for host, code := range want {
		req, _ := http.NewRequest("POST", base+"/v2.0/tokens", strings.NewReader(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"dev","apiKey":"dev"}}}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("POST /v2.0/tokens with Host %s: %s, want %d", host, resp.Status, code)
		}
	}
}

// So does one on every address, for requests that reach another of the
// machine's addresses (as a server in a container published on the host's
// loopback sees them), and so does its --metrics-listen; a name without a
// dot (a container's) is taken.
func TestDevServerOnEveryAddressRefusesOtherHosts(t *testing.T) {
	t.Parallel()
	var ip net.IP
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			ip = n.IP
			break
		}
	}
	if ip == nil {
		msg := fmt.Sprintf("no IPv4 address but loopback on this machine (%v): the test needs one", addrs)
		testprog.SkipOrFail(t, msg, "") // a build sandbox without a network
	}
	metricsPort := freeport.Port(t)
	base, _, _ := devServerWith(t, "--listen", "0.0.0.0:0", "--metrics-listen", "0.0.0.0:"+strconv.Itoa(metricsPort))
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	port, mport := u.Port(), strconv.Itoa(metricsPort)
	at := func(port string) string { return "http://" + net.JoinHostPort(ip.String(), port) }
	devLoginsByHost(t, at(port), map[string]int{
		"rebind.attacker.example:" + port:   http.StatusMisdirectedRequest,
		"registry:" + port:                  http.StatusOK,
		net.JoinHostPort(ip.String(), port): http.StatusOK,
	})
	for host, want := range map[string]int{"rebind.attacker.example:" + mport: http.StatusMisdirectedRequest, net.JoinHostPort(ip.String(), mport): http.StatusOK} {
		req, _ := http.NewRequest("GET", at(mport)+"/metrics", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /metrics reaching %s with Host %s: %s, want %d", ip, host, resp.Status, want)
		}
	}
}
