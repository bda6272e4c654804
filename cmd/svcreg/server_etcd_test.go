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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store/etcdstore/etcdtest"
)

var etcdListenLog = regexp.MustCompile(`url=(http://[0-9.:]+)`)

// startEtcdNode runs `svcreg server --dev` over etcd as a child process and
// returns its URL once it listens; kill sends it SIGKILL.
func startEtcdNode(t *testing.T, endpoints []string, prefix string) (url string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "server", "--dev", "--listen", "127.0.0.1:0",
		"--etcd-endpoints", strings.Join(endpoints, ","), "--etcd-prefix", prefix)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(kill)
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if m := etcdListenLog.FindStringSubmatch(lines.Text()); m != nil {
			go io.Copy(io.Discard, stderr)
			return m[1], kill
		}
	}
	t.Fatalf("server exited before listening: %v", lines.Err())
	return "", nil
}

// etcdNodeCall is one authenticated JSON request to a node.
func etcdNodeCall(url, token, method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url+path, rd)
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

// TestServerOverEtcd runs two `svcreg server --etcd-endpoints` processes
// over one etcd, kills one with SIGKILL in the middle of a stream of
// writes and heartbeats, and checks at the other that everything the
// killed one acknowledged is there and every heartbeat token it last
// handed out still works.
func TestServerOverEtcd(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	a, killA := startEtcdNode(t, c.Endpoints(), "/cmd-test/")
	b, _ := startEtcdNode(t, c.Endpoints(), "/cmd-test/")

	// A token issued by one node works at the other.
	resp, err := http.Post(a+"/v2.0/tokens", "application/json",
		strings.NewReader(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"etcd-crash","apiKey":"dev"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		Access struct {
			Token struct {
				ID     string              `json:"id"`
				Tenant struct{ ID string } `json:"tenant"`
			} `json:"token"`
		} `json:"access"`
	}
	json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	token, base := login.Access.Token.ID, "/v1.0/"+login.Access.Token.Tenant.ID

	var (
		mu     sync.Mutex
		tokens = map[string]string{} // service id -> latest acknowledged token
		config = map[string]string{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("svc-%d-%d", w, i%5)
				mu.Lock()
				tok, ok := tokens[id]
				mu.Unlock()
				if !ok {
					code, out, err := etcdNodeCall(a, token, "POST", base+"/services", map[string]any{"id": id, "heartbeat_timeout": 60})
					if err != nil {
						return // killed
					}
					if code == 201 {
						mu.Lock()
						tokens[id] = out["token"].(string)
						mu.Unlock()
					}
					continue
				}
				code, out, err := etcdNodeCall(a, token, "POST", base+"/services/"+id+"/heartbeat", map[string]any{"token": tok})
				if err != nil {
					return
				}
				if code == 200 {
					mu.Lock()
					tokens[id] = out["token"].(string)
					mu.Unlock()
				}
				key := fmt.Sprintf("key-%d", w)
				if code, _, err := etcdNodeCall(a, token, "PUT", base+"/configuration/"+key, map[string]any{"value": fmt.Sprint(i)}); err == nil && code == 204 {
					mu.Lock()
					config[key] = fmt.Sprint(i)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	killA()
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(tokens) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	for id, tok := range tokens {
		code, out, err := etcdNodeCall(b, token, "POST", base+"/services/"+id+"/heartbeat", map[string]any{"token": tok})
		if err != nil || code != 200 {
			t.Errorf("heartbeat of %s at the other node with the last token the killed one gave: %v %d %v", id, err, code, out)
		}
	}
	for key, v := range config {
		// A write in flight at the kill may have committed after the last
		// acknowledged one: the value is that one or a later one.
		code, out, err := etcdNodeCall(b, token, "GET", base+"/configuration/"+key, nil)
		got, _ := out["value"].(string)
		if err != nil || code != 200 || configValueNumber(got) < configValueNumber(v) {
			t.Errorf("value %s at the other node: %v %d %v, want %q or later", key, err, code, out, v)
		}
	}
}

func TestServerEtcdFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--dev", "--etcd-cert", "c.pem", "--etcd-key", "k.pem"},
		{"--dev", "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-cert", "c.pem"},
		{"--dev", "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-username", "u"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(t.Context(), append([]string{"server"}, args...), strings.NewReader(""), &stdout, &stderr); code != exitUsage {
			t.Errorf("svcreg server %q: exit %d, want %d (usage); stderr %s", args, code, exitUsage, stderr.String())
		}
	}
}

func configValueNumber(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
