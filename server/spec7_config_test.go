package server_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
)

// configIDs lists the ids of values.
func configIDs(vals []configValue) []string {
	out := []string{}
	for _, v := range vals {
		out = append(out, v.ID)
	}
	return out
}

// spec §7.8: list all, namespace lists (a plain string prefix, spec §13
// item 14) and single gets, told apart by the trailing slash; "//" in the
// URL reaches keys that begin with "/".
func TestConfigurationReads(t *testing.T) { onEachStore(t, testConfigurationReads) }

func testConfigurationReads(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	values := map[string]string{
		"/production/cassandra":                 "c",
		"/production/cassandra/listen_ip":       "10.0.0.1",
		"/production/cassandra/listen_port":     "9160",
		"/production/cassandra2/xyz":            "x",
		"/production/zookeeper/listen_ip":       "10.0.0.2",
		"/production/zookeeper/listen_port":     "2181",
		"/production/agent_endpoint/fb303.port": "1234",
		"/staging/cassandra/listen_ip":          "10.1.0.1",
		"ABC-upper":                             "u",
		"my-value-1":                            "one",
		"test.value.two":                        "two",
	}
	for id, v := range values {
		c.setConfig(id, v)
	}
	all := []string{
		"/production/agent_endpoint/fb303.port",
		"/production/cassandra",
		"/production/cassandra/listen_ip",
		"/production/cassandra/listen_port",
		"/production/cassandra2/xyz",
		"/production/zookeeper/listen_ip",
		"/production/zookeeper/listen_port",
		"/staging/cassandra/listen_ip",
		"ABC-upper",
		"my-value-1",
		"test.value.two",
	}

	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/configuration", all},
		{"/configuration/", all},
		{"/configuration?marker=/production/z", all[5:]},
		{"/configuration/production/cassandra/", all[1:5]},
		{"/configuration/production/", all[:7]},
		{"/configuration/production/zookeeper/", all[5:7]},
		{"/configuration/staging/", all[7:8]},
		{"/configuration/nothing-here/", []string{}},
		{"/configuration/production/?marker=/a", all[:7]},
		{"/configuration/production/?marker=/production/b", all[1:7]},
		{"/configuration/production/?marker=/q", []string{}},
	} {
		vals, _ := list[configValue](c.do("GET", tc.path, nil))
		if got := configIDs(vals); !slices.Equal(got, tc.want) {
			t.Errorf("GET %s: %q, want %q", tc.path, got, tc.want)
		}
		for _, v := range vals {
			if v.Value != values[v.ID] {
				t.Errorf("GET %s: %s = %q, want %q", tc.path, v.ID, v.Value, values[v.ID])
			}
		}
	}

	for _, id := range []string{"my-value-1", "test.value.two", "/production/cassandra", "/production/agent_endpoint/fb303.port"} {
		var got configValue
		c.do("GET", "/configuration/"+id, nil).want(200).json(&got)
		if got != (configValue{ID: id, Value: values[id]}) {
			t.Errorf("GET %s: %+v", id, got)
		}
	}
	for _, id := range []string{"my-va", "/production/zookeeper", "/production/cassandra2"} {
		c.do("GET", "/configuration/"+id, nil).notFound("ConfigurationValue", id)
		c.do("DELETE", "/configuration/"+id, nil).notFound("ConfigurationValue", id)
	}
}

// spec §7.8: namespace lists page like the others; following next_href
// from /production/cassandra/ with limit=1 reaches every value once.
func TestConfigurationNamespacePaging(t *testing.T) { onEachStore(t, testConfigurationNamespacePaging) }

func testConfigurationNamespacePaging(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	for _, id := range []string{"/production/cassandra", "/production/cassandra/listen_ip", "/production/cassandra/listen_port", "/production/zookeeper/xyz"} {
		c.setConfig(id, "v")
	}
	vals, meta := list[configValue](c.do("GET", "/configuration/production/cassandra/?limit=1", nil))
	if got := configIDs(vals); !slices.Equal(got, []string{"/production/cassandra"}) {
		t.Errorf("first page %q", got)
	}
	if meta.NextMarker == nil || *meta.NextMarker != "/production/cassandra/listen_ip" || meta.NextHref == nil {
		t.Fatalf("first page metadata %+v, want next_marker /production/cassandra/listen_ip", meta)
	}
	vals, meta = list[configValue](c.do("GET", "/configuration/production/cassandra/?marker=/production/cassandra/listen_ip", nil))
	if got := configIDs(vals); !slices.Equal(got, []string{"/production/cassandra/listen_ip", "/production/cassandra/listen_port"}) || meta.NextMarker != nil {
		t.Errorf("second page %q, next_marker %v", got, meta.NextMarker)
	}

	var seen []string
	href := c.base + "/v1.0/" + c.tenant + "/configuration/production/cassandra/?limit=1"
	for range 10 {
		vals, meta := list[configValue](c.raw("GET", href[len(c.base):], nil))
		seen = append(seen, configIDs(vals)...)
		if meta.NextHref == nil {
			break
		}
		href = *meta.NextHref
	}
	if want := []string{"/production/cassandra", "/production/cassandra/listen_ip", "/production/cassandra/listen_port"}; !slices.Equal(seen, want) {
		t.Errorf("following next_href: %q, want %q", seen, want)
	}
}

// spec §7.9, §7.10 and §6.3: a set is 204 whether it creates or updates;
// an unchanged value writes no event; delete is 204 and then 404.
func TestConfigurationWrites(t *testing.T) { onEachStore(t, testConfigurationWrites) }

func testConfigurationWrites(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.setConfig("/app/key", "one")
	c.setConfig("/app/key", "one")
	c.setConfig("/app/key", "two")
	var got configValue
	c.do("GET", "/configuration//app/key", nil).want(200).json(&got)
	if got != (configValue{ID: "/app/key", Value: "two"}) {
		t.Errorf("value %+v", got)
	}
	c.do("DELETE", "/configuration//app/key", nil).want(204)
	c.do("GET", "/configuration//app/key", nil).notFound("ConfigurationValue", "/app/key")
	c.do("DELETE", "/configuration//app/key", nil).notFound("ConfigurationValue", "/app/key")
	c.do("DELETE", "/configuration//app", nil).notFound("ConfigurationValue", "/app")

	evs := c.events("")
	wantTypes := []string{"configuration_value.update /app/key", "configuration_value.update /app/key", "configuration_value.remove /app/key"}
	if got := summary(evs); !slices.Equal(got, wantTypes) {
		t.Fatalf("events %q, want %q", got, wantTypes)
	}
	for i, want := range []map[string]any{
		{"old_value": nil, "new_value": "one", "configuration_value_id": "/app/key"},
		{"old_value": "one", "new_value": "two", "configuration_value_id": "/app/key"},
		{"old_value": "two", "configuration_value_id": "/app/key"},
	} {
		var p map[string]any
		json.Unmarshal(evs[i].Payload, &p)
		if !reflect.DeepEqual(p, want) {
			t.Errorf("event %d payload %s, want %v", i, evs[i].Payload, want)
		}
	}
}

// spec §7.8: every configuration read runs the pagination checks, a single
// get included, and they come before the id check.
func TestConfigurationReadsCheckPaging(t *testing.T) {
	onEachStore(t, testConfigurationReadsCheckPaging)
}

func testConfigurationReadsCheckPaging(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.setConfig("key-1", "v")
	for _, path := range []string{"/configuration", "/configuration/", "/configuration/ns/", "/configuration/key-1", "/configuration/ab"} {
		c.do("GET", path+"?limit=0", nil).fault(400, "invalidLimit", "Invalid limit", "Invalid limit 0. Minimum limit is 1 and maximum limit is 1000.")
		c.do("GET", path+"?marker=%21", nil).fault(400, "badRequest", "Invalid value for 'marker' query string parameter",
			`Marker contains invalid characters. Valid characters are: /^[a-z0-9\-:_\.\/]{0,255}$/i`)
	}
}
