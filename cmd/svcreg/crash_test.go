package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashKeepsAcknowledgedWrites kills the server with SIGKILL in the
// middle of a stream of writes and heartbeats, restarts it on the same data,
// and checks that every acknowledged write is there and every heartbeat
// token last handed out is still accepted.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServerProcess(t, "--data-dir", dir, "--service-limit", "100000", "--config-limit", "100000")
	a := login(t, srv.url, "crash")

	var (
		mu      sync.Mutex
		created = map[string]string{} // service id -> latest acknowledged token
		deleted = map[string]bool{}
		// deleting holds the service whose delete is in flight: at the
		// kill it may have been committed, or not.
		deleting = map[string]bool{}
		config   = map[string]string{}
		acks     int
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
					mu.Lock()
					deleting[victim] = true
					mu.Unlock()
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
					delete(deleting, victim)
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
	srv.kill()
	close(stop)
	wg.Wait()

	srv = startServerProcess(t, "--data-dir", dir)
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
			if !deleting[id] {
				t.Errorf("acknowledged service %s is missing after the crash", id)
			}
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
