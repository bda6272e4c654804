package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverProcess is `svcreg server` running as a child process.
type serverProcess struct {
	cmd  *exec.Cmd
	url  string
	out  *output // its standard error
	once sync.Once
}

// kill sends the server SIGKILL and waits for it to go.
func (s *serverProcess) kill() {
	s.once.Do(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
}

// startServerProcess runs `svcreg server --dev` on a loopback port, with
// args, and waits until it listens. kill sends it SIGKILL.
func startServerProcess(t testing.TB, args ...string) *serverProcess {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	args = append([]string{"server", "--dev", "--listen", "127.0.0.1:0", "--ready-file", ready}, args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	out := newOutput()
	cmd.Stdout, cmd.Stderr = io.Discard, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	srv := &serverProcess{cmd: cmd, out: out}
	t.Cleanup(srv.kill)
	srv.url = waitReadyFile(t, ready, out)
	return srv
}

// waitReadyFile waits for a server's --ready-file and returns the base URL
// it holds; out is the server's output, for the failure message.
func waitReadyFile(t testing.TB, path string, out *output) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server wrote no %s in 30s; its output:\n%s", path, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// api is a minimal raw client of one tenant at one server.
type api struct {
	url, tenant, token string
	http               *http.Client
}

// at returns the client with the same token, talking to another server.
func (a *api) at(url string) *api {
	c := *a
	c.url = url
	return &c
}

func login(t testing.TB, url, user string) *api {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":%q,"apiKey":"dev"}}}`, user)
	resp, err := http.Post(url+"/v2.0/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
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
		t.Fatal(err)
	}
	// A transport of its own: a parallel test's httptest.Server.Close
	// closes http.DefaultTransport's idle connections, and a PUT that had
	// just taken one failed ("CloseIdleConnections called").
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &api{url: url, tenant: out.Access.Token.Tenant.ID, token: out.Access.Token.ID, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (a *api) do(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	return a.send(method, a.url+"/v1.0/"+a.tenant+path, rd)
}

// send makes a request to url with the token.
func (a *api) send(method, url string, rd io.Reader) (int, []byte, error) {
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Auth-Token", a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// doJSON is do with the answer decoded as a JSON object.
func (a *api) doJSON(method, path string, body any) (int, map[string]any, error) {
	code, data, err := a.do(method, path, body)
	var out map[string]any
	json.Unmarshal(data, &out)
	return code, out, err
}
