package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testcert"
	"github.com/svcreg/svcreg/internal/testfs"
)

// usersProcess is `svcreg server --users FILE` as a child process.
type usersProcess struct {
	cmd *exec.Cmd
	out *output
	url string
}

func startUsersServer(t *testing.T, args ...string) *usersProcess {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	args = append([]string{"server", "--listen", "127.0.0.1:0", "--ready-file", ready, "--data-dir", t.TempDir()}, args...)
	p := &usersProcess{cmd: exec.Command(os.Args[0], args...), out: newOutput()}
	p.cmd.Env = append(os.Environ(), execEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	p.url = waitReadyFile(t, ready, p.out)
	return p
}

// hup sends SIGHUP and waits for the n-th log line holding want.
func (p *usersProcess) hup(t *testing.T, want string, n int) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitOutput(t, want, n)
}

// waitOutput waits for the n-th log line holding want: the server's
// output reaches p.out through a pipe, after what the server did next
// (its ready file, say).
func (p *usersProcess) waitOutput(t *testing.T, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(p.out.String(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q (%d wanted); output:\n%s", want, n, p.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tokenStatus asks for a token with an API key and returns the status and
// the token.
func tokenStatus(t testing.TB, hc *http.Client, base, user, key string) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":%q,"apiKey":%q}}}`, user, key)
	resp, err := hc.Post(base+"/v2.0/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	m := regexp.MustCompile(`"id":"([0-9a-f]{64})"`).FindStringSubmatch(buf.String())
	if m == nil {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, m[1]
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// SIGHUP re-reads the users file: new users get in, removed users' tokens
// stop working; an invalid file is refused and the users in use are kept.
// The server keeps running throughout.
func TestServerSIGHUPReloadsUsers(t *testing.T) {
	t.Parallel()
	users := filepath.Join(t.TempDir(), "users.toml")
	writeFile(t, users, "[[user]]\nname = \"old\"\ntenant = \"501\"\napi_key = \"old-key\"\n")
	p := startUsersServer(t, "--users", users)
	hc := &http.Client{Timeout: 10 * time.Second}
	code, oldToken := tokenStatus(t, hc, p.url, "old", "old-key")
	if code != 200 {
		t.Fatalf("old user: %d", code)
	}
	get := func(token, tenant string) int {
		req, _ := http.NewRequest("GET", p.url+"/v1.0/"+tenant+"/services", nil)
		req.Header.Set("X-Auth-Token", token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	writeFile(t, users, "[[user]]\nname = \"new\"\ntenant = \"502\"\napi_key = \"new-key\"\n")
	p.hup(t, "SIGHUP: read the users file", 1)
	if code, _ := tokenStatus(t, hc, p.url, "new", "new-key"); code != 200 {
		t.Errorf("new user after SIGHUP: %d, want 200", code)
	}
	if code := get(oldToken, "501"); code != 401 {
		t.Errorf("removed user's token after SIGHUP: %d, want 401", code)
	}

	writeFile(t, users, "[[user]]\nname = \"broken\"\ntenant = \"not a number\"\napi_key = \"k\"\n")
	p.hup(t, "SIGHUP: kept the users", 1)
	if code, _ := tokenStatus(t, hc, p.url, "new", "new-key"); code != 200 {
		t.Errorf("after an invalid users file: %d, want the users in use kept (200)", code)
	}
	if p.cmd.ProcessState != nil {
		t.Fatal("the server exited")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("stop after SIGHUPs: %v; output:\n%s", err, p.out)
	}
}

// A users file every local user can read (0644 in directories they can
// search) is warned of, at start and at SIGHUP; one that they cannot,
// by its mode or by a directory above it, is not.
func TestServerWarnsOfAUsersFileOthersCanRead(t *testing.T) {
	t.Parallel()
	dir := testfs.SearchableTempDir(t)
	users := filepath.Join(dir, "users.toml")
	writeFile(t, users, "[[user]]\nname = \"u\"\ntenant = \"501\"\napi_key = \"k\"\n")
	if err := os.Chmod(users, 0o644); err != nil {
		t.Fatal(err)
	}
	const warning = "--users file can be read by every local user"
	p := startUsersServer(t, "--users", users)
	p.waitOutput(t, "svcreg server listening", 1) // logged after the warning
	if n := strings.Count(p.out.String(), warning); n != 1 {
		t.Fatalf("a 0644 users file: %d warnings; want one:\n%s", n, p.out)
	}
	if err := os.Chmod(users, 0o640); err != nil {
		t.Fatal(err)
	}
	p.hup(t, "SIGHUP: read the users file", 1)
	if err := os.Chmod(users, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	p.hup(t, "SIGHUP: read the users file", 2)
	if n := strings.Count(p.out.String(), warning); n != 1 {
		t.Errorf("after SIGHUPs with the file 0640, then in a directory others cannot search: %d warnings; want still one:\n%s", n, p.out)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.hup(t, "SIGHUP: read the users file", 3)
	if n := strings.Count(p.out.String(), warning); n != 2 {
		t.Errorf("a SIGHUP with the file readable again: %d warnings; want two:\n%s", n, p.out)
	}
}

// SIGHUP re-reads --tls-cert and --tls-key: new connections get the new
// certificate; a key that does not match is refused and the pair in use
// kept.
func TestServerSIGHUPReloadsTLSCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	users := filepath.Join(dir, "users.toml")
	writeFile(t, users, "[[user]]\nname = \"u\"\ntenant = \"601\"\napi_key = \"k\"\n")
	p := startUsersServer(t, "--users", users, "--tls-cert", certFile, "--tls-key", keyFile)
	serial := func() int64 {
		t.Helper()
		conn, err := tls.Dial("tcp", strings.TrimPrefix(p.url, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d before SIGHUP, want 1", got)
	}
	writeCert(t, certFile, keyFile, 2)
	p.hup(t, "SIGHUP: read the users file", 1)
	if got := serial(); got != 2 {
		t.Errorf("serial %d after SIGHUP, want 2", got)
	}
	// A certificate whose key is another's: refused, serial 2 kept.
	writeCert(t, certFile, filepath.Join(dir, "other-key.pem"), 3)
	p.hup(t, "SIGHUP: kept the users", 1)
	if got := serial(); got != 2 {
		t.Errorf("serial %d after a mismatched pair, want 2 kept", got)
	}
}

// A TLS handshake error quotes what the client offered (its protocol
// list, up to 64 KB, four bytes a byte when quoted): no credentials are
// needed to have it logged, so its line is cut.
func TestTLSHandshakeErrorLogIsBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile)
	var protos []string
	for range 200 { // one ClientHello of about 51 KB
		protos = append(protos, strings.Repeat("\x01", 255))
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.url, "https://"), &tls.Config{InsecureSkipVerify: true, NextProtos: protos})
	if err == nil {
		conn.Close()
		t.Fatal("the handshake succeeded")
	}
	srv.out.waitFor(t, "TLS handshake error")
	srv.kill()
	for line := range strings.SplitSeq(srv.out.String(), "\n") {
		if strings.Contains(line, "TLS handshake error") && len(line) > 1024 {
			t.Fatalf("one handshake without credentials wrote a log line of %d bytes: %.300s…", len(line), line)
		}
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 with serial
// number serial, and its key.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	cert := testcert.New(t, "svcreg test", serial)
	writeFile(t, certFile, string(cert.PEM()))
	writeFile(t, keyFile, string(cert.KeyPEM(t)))
}

// --dev lets anyone in, so it never runs beside a users file; and it says
// so at startup.
func TestServerDevExcludesUsers(t *testing.T) {
	t.Parallel()
	users := filepath.Join(t.TempDir(), "users.toml")
	writeFile(t, users, "[[user]]\nname = \"u\"\ntenant = \"7777\"\napi_key = \"k\"\n")
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"server", "--dev", "--users", users, "--data-dir", t.TempDir()}, nil, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "--dev") {
		t.Errorf("--dev --users: exit %d, stderr %q; want a usage error naming --dev", code, stderr.String())
	}

	p := startUsersServer(t, "--dev")
	p.out.waitFor(t, `level=WARN msg="--dev: ANY username authenticates`)
}

// A token lifetime past what a revocation is kept for, or below a second,
// is a usage error.
func TestServerTokenTTLBounds(t *testing.T) {
	t.Parallel()
	for _, ttl := range []string{"0s", "-1h", "500ms", "721h"} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"server", "--dev", "--token-ttl", ttl, "--data-dir", t.TempDir()}, nil, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), "--token-ttl") {
			t.Errorf("--token-ttl %s: exit %d, stderr %q; want a usage error naming --token-ttl", ttl, code, stderr.String())
		}
	}
}

// Values that the server would otherwise replace with a default, turn
// into no limit, or act on to its harm (a negative retention deletes every
// event each second) are usage errors that name the flag.
func TestServerRefusesValuesItCannotUse(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--retention", "-1h"},
		{"--retention", "10ms"},
		{"--rate-limit", "0"},
		{"--rate-limit", "-5"},
		{"--write-rate", "NaN"},
		{"--write-rate", "+Inf"},
		{"--login-failures-per-address", "0"},
		{"--login-failures-per-user", "-2"},
		{"--token-issues-per-user", "0"},
		{"--unauth-idle-timeout", "0s"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append([]string{"server", "--dev", "--data-dir", t.TempDir()}, args...), nil, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), args[0]) {
			t.Errorf("%s %s: exit %d, stderr %q; want a usage error naming %s", args[0], args[1], code, stderr.String(), args[0])
		}
	}
}

// The --dev banner's exports work as they are when SVCREG_URL is later
// given every node's URL: no SVCREG_AUTH_URL pins logins to one node.
func TestDevHelpLeavesTheIdentityEndpointToTheURL(t *testing.T) {
	var b strings.Builder
	printDevHelp(&b, "http://127.0.0.1:8420")
	if out := b.String(); !strings.Contains(out, "export SVCREG_URL=http://127.0.0.1:8420/v1.0 SVCREG_USERNAME=dev SVCREG_API_KEY=dev\n") || strings.Contains(out, "SVCREG_AUTH_URL") {
		t.Errorf("dev help:\n%s", out)
	}
}
