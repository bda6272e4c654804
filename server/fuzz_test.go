package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/server/store/boltstore"
)

const fuzzToken = "fuzz-token"

// newFuzzServer is a server with a static token for tenant 7777.
func newFuzzServer(f *testing.F) *Server {
	st, err := boltstore.Open(f.TempDir(), boltstore.Options{ReapInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	auth := NewAuth(AuthConfig{Store: st, Users: []User{{Name: "fuzz", Tenant: "7777", Tokens: []string{fuzzToken}}}})
	return New(Config{Store: st, Auth: auth})
}

// FuzzAPI sends arbitrary requests through the whole /v1.0 pipeline: no
// input may panic the server or get a 5xx, and every 4xx but 413 carries
// a well-formed fault body whose txnId is the X-Response-Id.
func FuzzAPI(f *testing.F) {
	s := newFuzzServer(f)
	for _, seed := range []struct{ method, target, ctype, body string }{
		{"GET", "/v1.0/7777/services", "", ""},
		{"GET", "/v1.0/7777/services?tag=www&limit=2&marker=a", "", ""},
		{"POST", "/v1.0/7777/services", "application/json", `{"id":"web1","heartbeat_timeout":30,"tags":["www"],"metadata":{"port":"80"}}`},
		{"POST", "/v1.0/7777/services", "application/json", `{"id":"ab","heartbeat_timeout":"3e1","tags":"abc","metadata":[1]}`},
		{"PUT", "/v1.0/7777/services/web1", "application/json", `{"tags":null,"metadata":{"":"x"}}`},
		{"POST", "/v1.0/7777/services/web1/heartbeat", "application/json", `{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`},
		{"DELETE", "/v1.0/7777/services/web1/", "", ""},
		{"PUT", "/v1.0/7777/configuration//production/cassandra", "application/json; charset=utf-8", `{"value":"10.0.0.1"}`},
		{"GET", "/v1.0/7777/configuration/production/", "", ""},
		{"GET", "/v1.0/7777/configuration/%80", "", ""},
		{"GET", "/v1.0/7777/events?marker=0&type=service.join&type=x", "", ""},
		{"GET", "/v1.0/7777/events?limit=1000&wait=0", "", ""},
		{"POST", "/v1.0/7777/limits", "", `[{"method":"GET","path_regex":"/.*","limit":5,"used":1,"period":60}]`},
		{"GET", "/v1.0/SERVICES/", "text/plain", "null"},
		{"POST", "/v1.0/7777/services", "application/json", `{"id":"x"} trailing`},
	} {
		f.Add(seed.method, seed.target, seed.ctype, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, method, target, ctype string, body []byte) {
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: fuzz\r\nX-Auth-Token: %s\r\n", method, target, fuzzToken)
		if ctype != "" {
			fmt.Fprintf(&raw, "Content-Type: %s\r\n", ctype)
		}
		fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n", len(body))
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil || !strings.HasPrefix(req.RequestURI, "/v1.0") {
			return // net/http refuses it before any handler runs, or not the API
		}
		req = req.WithContext(t.Context())
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: status %d: %s", method, target, rec.Code, rec.Body)
		}
		txn := rec.Header().Get("X-Response-Id")
		if txn == "" {
			t.Fatalf("%s %s: no X-Response-Id", method, target)
		}
		if rec.Code < 400 || rec.Code == http.StatusRequestEntityTooLarge {
			return
		}
		var fb faultBody
		if err := json.Unmarshal(rec.Body.Bytes(), &fb); err != nil {
			t.Fatalf("%s %s: status %d with a body that is not a fault: %q", method, target, rec.Code, rec.Body)
		}
		if fb.Code != rec.Code || fb.Type == "" || fb.Message == "" || fb.Details == nil || fb.TxnID != txn {
			t.Fatalf("%s %s: malformed fault %+v (status %d, X-Response-Id %s)", method, target, fb, rec.Code, txn)
		}
	})
}

// FuzzValidateNewService checks that whatever a create body holds, the
// validator either refuses it with a 400 or returns a service that keeps
// every rule of spec §5.1.
func FuzzValidateNewService(f *testing.F) {
	for _, seed := range []string{
		`{"id":"web-1.a_b","heartbeat_timeout":30,"tags":["www","a"],"metadata":{"k":"v"}}`,
		`{"id":"web1","heartbeat_timeout":"120","tags":null,"metadata":null}`,
		`{"id":"web1","heartbeat_timeout":30.0}`,
		`{"id":"web1","heartbeat_timeout":1e1}`,
		`{"id":"web1","heartbeat_timeout":30,"tags":"abcdefghijklmnop"}`,
		`{"id":"web1","heartbeat_timeout":30,"metadata":{"a":1}}`,
		`{"id":"\ud83d\ude00abc","heartbeat_timeout":3}`,
		`[1,2,3]`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, pf := parseBody(data)
		if pf != nil {
			if pf.Status != http.StatusBadRequest {
				t.Fatalf("parse fault status %d", pf.Status)
			}
			return
		}
		ns, vf := validateNewService(b)
		if vf != nil {
			if vf.Status != http.StatusBadRequest || vf.Type != faultBadRequest || vf.Message == "" || vf.Details == nil {
				t.Fatalf("malformed validation fault %+v", vf)
			}
			return
		}
		if checkServiceID(ns.ID) != "" {
			t.Fatalf("accepted id %q", ns.ID)
		}
		if ns.HeartbeatTimeout < 3 || ns.HeartbeatTimeout > 120 {
			t.Fatalf("accepted heartbeat_timeout %d", ns.HeartbeatTimeout)
		}
		if ns.Tags == nil || ns.Metadata == nil || len(ns.Tags) > 10 || len(ns.Metadata) > 20 {
			t.Fatalf("accepted tags %q metadata %q", ns.Tags, ns.Metadata)
		}
		for _, tag := range ns.Tags {
			if n := jsLength(tag); n < 1 || n > 55 {
				t.Fatalf("accepted tag %q", tag)
			}
		}
		for k, v := range ns.Metadata {
			if n, m := jsLength(k), jsLength(v); n < 1 || n > 255 || m < 1 || m > 255 {
				t.Fatalf("accepted metadata %q=%q", k, v)
			}
		}
	})
}
