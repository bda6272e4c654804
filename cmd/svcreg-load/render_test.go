package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/etcdtest"
)

func TestParseRenderPlan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		services, rates, changes string
		burst                    time.Duration
		want                     []renderStep
		err                      string
	}{
		{"1000,5000,10000", "200,250,250", "1000,5000,10000", 0,
			[]renderStep{{1000, 1000, 200}, {5000, 5000, 250}, {10000, 10000, 250}}, ""},
		{"1000,5000", "250", "", 20 * time.Second,
			[]renderStep{{1000, 5000, 250}, {5000, 5000, 250}}, ""},
		{"1000, 5000", "100,50", "300", 0,
			[]renderStep{{1000, 300, 100}, {5000, 300, 50}}, ""},
		{"1000,5000,10000", "200,250", "", time.Second, nil, "--rate: give one rate, or one per --services count (3)"},
		{"1000,5000", "250", "1,2,3", 0, nil, "--changes: give one count, or one per --services count (2)"},
		{"1000", "0", "", time.Second, nil, `--rate: "0" is not a positive rate`},
		{"1000", "fast", "", time.Second, nil, `--rate: "fast" is not a positive rate`},
		{"0", "250", "", time.Second, nil, `--services: "0" is not a count`},
		{"1000", "250", "-5", 0, nil, `--changes: "-5" is not a count`},
		{"1000", "2", "", 100 * time.Millisecond, nil, "--burst: no change fits in it at --rate"},
	} {
		got, err := parseRenderPlan(tc.services, tc.rates, tc.changes, tc.burst)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("parseRenderPlan(%q, %q, %q, %s) = %v, %v; want error %q", tc.services, tc.rates, tc.changes, tc.burst, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseRenderPlan(%q, %q, %q, %s) = %v, %v; want %v", tc.services, tc.rates, tc.changes, tc.burst, got, err, tc.want)
		}
	}
}

// registry is what a renderer should end up rendering: service id ->
// metadata.
type registry map[string]map[string]string

// apply makes c, failing where the real registry would refuse it.
func (r registry) apply(c change) error {
	_, exists := r[c.id]
	switch {
	case c.op == join && exists:
		return fmt.Errorf("join of %s, which exists", c.id)
	case c.op != join && !exists:
		return fmt.Errorf("change %d of %s, which does not exist", c.op, c.id)
	case c.op == leave:
		delete(r, c.id)
	default:
		r[c.id] = c.meta
	}
	return nil
}

// lines renders r as both templates do, one line per service.
func (r registry) lines() []byte {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(r)) {
		m := r[id]
		fmt.Fprintf(&b, "server %s %s:%s weight=%s\n", id, m["ip"], m["port"], m["weight"])
	}
	return []byte(b.String())
}

// The burst is valid against the preloaded services (every join new, every
// update and leave of a service that exists), touches every kind of change,
// and ends with the last 100 joins and the last change present.
func TestBurstChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ n, changes int }{{1000, 1000}, {5, 1000}, {1000, 150}} {
		r := registry{}
		for i := range tc.n {
			if err := r.apply(preloaded(i)); err != nil {
				t.Fatal(err)
			}
		}
		ops := map[changeOp]int{}
		for i := range tc.changes {
			c := burstChange(i, tc.n)
			ops[c.op]++
			if err := r.apply(c); err != nil {
				t.Fatalf("n=%d, change %d: %v", tc.n, i, err)
			}
		}
		if err := r.apply(lastChange(tc.n, tc.changes)); err != nil {
			t.Fatal(err)
		}
		joins := (tc.changes + 1) / 2
		if want := tc.n + min(joins, 100) + 1; len(r) != want {
			t.Errorf("n=%d, %d changes: %d services at the end, want %d", tc.n, tc.changes, len(r), want)
		}
		if ops[join] != joins || ops[update]+ops[leave] != tc.changes-joins || ops[leave] != max(0, tc.changes/2-100) {
			t.Errorf("n=%d, %d changes: %v joins, updates, leaves", tc.n, tc.changes, ops)
		}
		addrs := map[string]string{}
		for id, m := range r {
			if m["ip"] == "10.9.9.9" {
				continue
			}
			if other, ok := addrs[m["ip"]]; ok {
				t.Errorf("%s and %s share the address %s", id, other, m["ip"])
			}
			addrs[m["ip"]] = id
		}
	}
}

func TestLineDiff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b           string
		missing, extra []string
	}{
		{"x\ny\n", "x\ny\n", nil, nil},
		{"x\ny\n", "y\nx\n", nil, nil},
		{"x\ny\n", "x\n", []string{"y\n"}, nil},
		{"x\n", "x\nz\n", nil, []string{"z\n"}},
		{"x\nx\n", "x\n", []string{"x\n"}, nil},
		{"x\ny", "x\ny\n", []string{"y"}, []string{"y\n"}},
		{"a\nb\nc\n", "c\nd\na\n", []string{"b\n"}, []string{"d\n"}},
	} {
		missing, extra := lineDiff([]byte(tc.a), []byte(tc.b))
		if !slices.Equal(missing, tc.missing) || !slices.Equal(extra, tc.extra) {
			t.Errorf("lineDiff(%q, %q) = %q, %q; want %q, %q", tc.a, tc.b, missing, extra, tc.missing, tc.extra)
		}
	}
}

// The keys confd's template reads from etcd hold what the registry holds:
// one key per service under the prefix, its metadata as a JSON object, after
// a preload of more services than one transaction takes and a burst.
func TestEtcdKeyLayout(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := etcdtest.Client(t, c.Endpoints()...)
	ctx := t.Context()
	const n, changes = 250, 400
	want := registry{}
	for i := range n {
		want.apply(preloaded(i))
	}
	if err := preloadEtcd(ctx, cli, n); err != nil {
		t.Fatal(err)
	}
	for i := range changes {
		c := burstChange(i, n)
		want.apply(c)
		if _, err := cli.Do(ctx, etcdOp(c)); err != nil {
			t.Fatal(err)
		}
	}

	resp, err := cli.Get(ctx, etcdPrefix+"/services/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := registry{}
	for _, kv := range resp.Kvs {
		id, ok := strings.CutPrefix(string(kv.Key), etcdPrefix+"/services/")
		if !ok || strings.Contains(id, "/") {
			t.Fatalf("key %q is not a service's", kv.Key)
		}
		var m map[string]string
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		got[id] = m
	}
	if len(got) != n+100 {
		t.Errorf("%d services in etcd, want %d", len(got), n+100)
	}
	if missing, extra := lineDiff(want.lines(), got.lines()); len(missing)+len(extra) > 0 {
		t.Errorf("etcd differs from the registry: missing %q, extra %q", missing, extra)
	}
}
