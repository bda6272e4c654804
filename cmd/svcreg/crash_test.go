package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverProcess is `svcreg server` running as a child process.
type serverProcess struct {
	cmd *exec.Cmd
	url string
}

var listenLog = regexp.MustCompile(`url=(http://[0-9.:]+)`)

// startServerProcess runs `svcreg server --dev` on dataDir and waits until
// it listens.
func startServerProcess(t *testing.T, dataDir string, extra ...string) *serverProcess {
	t.Helper()
	args := append([]string{"server", "--dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if m := listenLog.FindStringSubmatch(lines.Text()); m != nil {
			go io.Copy(io.Discard, stderr)
			return &serverProcess{cmd: cmd, url: m[1]}
		}
	}
	t.Fatalf("server exited before listening: %v", lines.Err())
	return nil
}

// api is a minimal raw client for the crash test.
type api struct {
	base, token string
	http        *http.Client
}

func login(t *testing.T, url, user string) *api {
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
	return &api{base: url + "/v1.0/" + out.Access.Token.Tenant.ID, token: out.Access.Token.ID, http: &http.Client{Timeout: 10 * time.Second}}
}

func (a *api) do(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
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

// TestCrashKeepsAcknowledgedWrites kills the server with SIGKILL in the
// middle of a stream of writes and heartbeats, restarts it on the same data,
// and checks that every acknowledged write is there and every heartbeat
// token last handed out is still accepted.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServerProcess(t, dir, "--service-limit", "100000", "--config-limit", "100000")
	a := login(t, srv.url, "crash")

	var (
		mu      sync.Mutex
		created = map[string]string{} // service id -> latest acknowledged token
		deleted = map[string]bool{}
		config  = map[string]string{}
		acks    int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("svc-%d-%d", g, i)
				code, body, err := a.do("POST", "/services", map[string]any{"id": id, "heartbeat_timeout": 120, "metadata": map[string]string{"i": fmt.Sprint(i)}})
				if err != nil {
					return
				}
				if code != http.StatusCreated {
					t.Errorf("create %s: %d %s", id, code, body)
					return
				}
				var tok struct{ Token string }
				json.Unmarshal(body, &tok)
				mu.Lock()
				created[id], acks = tok.Token, acks+1
				mu.Unlock()

				code, body, err = a.do("POST", "/services/"+id+"/heartbeat", map[string]string{"token": tok.Token})
				if err != nil {
					return
				}
				if code != http.StatusOK {
					t.Errorf("heartbeat %s: %d %s", id, code, body)
					return
				}
				json.Unmarshal(body, &tok)
				mu.Lock()
				created[id] = tok.Token
				mu.Unlock()

				key := fmt.Sprintf("/crash/group%d/key%d", g, i)
				code, _, err = a.do("PUT", "/configuration/"+key, map[string]string{"value": id})
				if err != nil {
					return
				}
				if code != http.StatusNoContent {
					t.Errorf("set %s: %d", key, code)
					return
				}
				mu.Lock()
				config[key] = id
				mu.Unlock()
				if i%3 == 2 {
					victim := fmt.Sprintf("svc-%d-%d", g, i-1)
					code, _, err = a.do("DELETE", "/services/"+victim, nil)
					if err != nil {
						return
					}
					if code != http.StatusNoContent {
						t.Errorf("delete %s: %d", victim, code)
						return
					}
					mu.Lock()
					deleted[victim] = true
					delete(created, victim)
					mu.Unlock()
				}
			}
		}(g)
	}
	for {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		n := acks
		mu.Unlock()
		if n >= 300 {
			break
		}
	}
	if err := srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Wait()
	close(stop)
	wg.Wait()

	srv = startServerProcess(t, dir)
	a = login(t, srv.url, "crash")
	live := map[string]bool{}
	marker := ""
	for {
		code, body, err := a.do("GET", "/services?limit=1000&marker="+marker, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("list services after restart: %d %s %v", code, body, err)
		}
		var page struct {
			Values   []struct{ ID string }
			Metadata struct {
				NextMarker *string `json:"next_marker"`
			}
		}
		json.Unmarshal(body, &page)
		for _, s := range page.Values {
			live[s.ID] = true
		}
		if page.Metadata.NextMarker == nil {
			break
		}
		marker = *page.Metadata.NextMarker
	}
	mu.Lock()
	defer mu.Unlock()
	for id, tok := range created {
		if !live[id] {
			t.Errorf("acknowledged service %s is missing after the crash", id)
			continue
		}
		code, body, err := a.do("POST", "/services/"+id+"/heartbeat", map[string]string{"token": tok})
		if err != nil || code != http.StatusOK {
			t.Errorf("heartbeat %s with its last acknowledged token after the crash: %d %s %v", id, code, body, err)
		}
	}
	for id := range deleted {
		if live[id] {
			t.Errorf("acknowledged delete of %s is undone after the crash", id)
		}
	}
	for key, want := range config {
		code, body, err := a.do("GET", "/configuration/"+key, nil)
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), `"value":"`+want+`"`) {
			t.Errorf("acknowledged configuration %s=%s after the crash: %d %s %v", key, want, code, body, err)
		}
	}
	t.Logf("%d services, %d deletes, %d configuration values acknowledged before SIGKILL", len(created), len(deleted), len(config))
}
