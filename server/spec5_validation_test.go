package server_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
)

// manyItems is a JSON array of n strings, or an object of n string members.
func manyItems(n int, object bool) string {
	parts := make([]string, n)
	for i := range parts {
		if object {
			parts[i] = fmt.Sprintf(`"k%d":1`, i) // bad values: the count fails first
		} else {
			parts[i] = "1" // bad items: the count fails first
		}
	}
	if object {
		return "{" + strings.Join(parts, ",") + "}"
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// spec §5.1 and §5.2: a create body is checked key by key in the order id,
// tags, metadata, heartbeat_timeout, each along its chain, and the first
// failure is reported.
func TestCreateServiceValidation(t *testing.T) { onEachStore(t, testCreateServiceValidation) }

func testCreateServiceValidation(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	a := strings.Repeat
	for _, tc := range []struct {
		name, body   string // body without its braces
		key, details string
	}{
		{"id missing", `"heartbeat_timeout":30`, "id", "Missing required key (id)"},
		{"id missing comes first", `"tags":5,"heartbeat_timeout":1`, "id", "Missing required key (id)"},
		{"id a number", `"id":123,"heartbeat_timeout":30`, "id", "Not a string"},
		{"id null", `"id":null,"heartbeat_timeout":30`, "id", "Not a string"},
		{"id an array", `"id":["abc"],"heartbeat_timeout":30`, "id", "Not a string"},
		{"id empty", `"id":"","heartbeat_timeout":30`, "id", "String is not in range (3..65)"},
		{"id too short", `"id":"ab","heartbeat_timeout":30`, "id", "String is not in range (3..65)"},
		{"id too long", `"id":"` + a("a", 66) + `","heartbeat_timeout":30`, "id", "String is not in range (3..65)"},
		{"id length before characters", `"id":"a!","heartbeat_timeout":30`, "id", "String is not in range (3..65)"},
		{"id with a space", `"id":"a b","heartbeat_timeout":30`, "id", "Invalid characters"},
		{"id with a slash", `"id":"a/b","heartbeat_timeout":30`, "id", "Invalid characters"},
		{"id with a colon", `"id":"a:b","heartbeat_timeout":30`, "id", "Invalid characters"},
		{"id non-ASCII", `"id":"abé","heartbeat_timeout":30`, "id", "Invalid characters"},
		// JavaScript's /i does not fold them to k and s, as Go's (?i) does.
		{"id with the Kelvin sign", `"id":"\u212aab","heartbeat_timeout":30`, "id", "Invalid characters"},
		{"id with the long s", `"id":"\u017fab","heartbeat_timeout":30`, "id", "Invalid characters"},
		{"id before tags", `"id":"ab","tags":5,"heartbeat_timeout":30`, "id", "String is not in range (3..65)"},

		{"tags 11 items", `"id":"svc-1","tags":` + manyItems(11, false) + `,"heartbeat_timeout":30`, "tags", "Object needs to have between 0 and 10 items"},
		{"tags a string", `"id":"svc-1","tags":"abc","heartbeat_timeout":30`, "tags", "Not an array"},
		{"tags a number", `"id":"svc-1","tags":7,"heartbeat_timeout":30`, "tags", "Not an array"},
		{"tags true", `"id":"svc-1","tags":true,"heartbeat_timeout":30`, "tags", "Not an array"},
		{"tags an object", `"id":"svc-1","tags":{"a":"b"},"heartbeat_timeout":30`, "tags", "Not an array"},
		{"tags item a number", `"id":"svc-1","tags":["ok",1],"heartbeat_timeout":30`, "tags", "Not a string"},
		{"tags item null", `"id":"svc-1","tags":[null],"heartbeat_timeout":30`, "tags", "Not a string"},
		{"tags item empty", `"id":"svc-1","tags":[""],"heartbeat_timeout":30`, "tags", "String is not in range (1..55)"},
		{"tags item too long", `"id":"svc-1","tags":["` + a("t", 56) + `"],"heartbeat_timeout":30`, "tags", "String is not in range (1..55)"},
		{"tags before metadata", `"id":"svc-1","tags":[1],"metadata":[],"heartbeat_timeout":30`, "tags", "Not a string"},

		{"metadata 21 items", `"id":"svc-1","metadata":` + manyItems(21, true) + `,"heartbeat_timeout":30`, "metadata", "Object needs to have between 0 and 20 items"},
		{"metadata an array", `"id":"svc-1","metadata":[],"heartbeat_timeout":30`, "metadata", "Not a hash"},
		{"metadata a string", `"id":"svc-1","metadata":"abc","heartbeat_timeout":30`, "metadata", "Not a hash"},
		{"metadata a number", `"id":"svc-1","metadata":5,"heartbeat_timeout":30`, "metadata", "Not a hash"},
		{"metadata empty key", `"id":"svc-1","metadata":{"":"x"},"heartbeat_timeout":30`, "metadata", "Key : String is not in range (1..255)"},
		{"metadata key too long", `"id":"svc-1","metadata":{"` + a("k", 256) + `":"x"},"heartbeat_timeout":30`, "metadata", "Key " + a("k", 256) + ": String is not in range (1..255)"},
		{"metadata value a number", `"id":"svc-1","metadata":{"port":3306},"heartbeat_timeout":30`, "metadata", "Value for key 'port': Not a string"},
		{"metadata value null", `"id":"svc-1","metadata":{"port":null},"heartbeat_timeout":30`, "metadata", "Value for key 'port': Not a string"},
		{"metadata value empty", `"id":"svc-1","metadata":{"port":""},"heartbeat_timeout":30`, "metadata", "Value for key 'port': String is not in range (1..255)"},
		{"metadata value too long", `"id":"svc-1","metadata":{"port":"` + a("v", 256) + `"},"heartbeat_timeout":30`, "metadata", "Value for key 'port': String is not in range (1..255)"},
		{"metadata first bad member", `"id":"svc-1","metadata":{"a":"ok","b":1,"":"x"},"heartbeat_timeout":30`, "metadata", "Value for key 'b': Not a string"},
		{"metadata before heartbeat_timeout", `"id":"svc-1","metadata":[],"heartbeat_timeout":1`, "metadata", "Not a hash"},

		{"heartbeat_timeout missing", `"id":"svc-1"`, "heartbeat_timeout", "Missing required key (heartbeat_timeout)"},
		{"heartbeat_timeout null", `"id":"svc-1","heartbeat_timeout":null`, "heartbeat_timeout", "Invalid integer"},
		{"heartbeat_timeout true", `"id":"svc-1","heartbeat_timeout":true`, "heartbeat_timeout", "Invalid integer"},
		{"heartbeat_timeout fractional", `"id":"svc-1","heartbeat_timeout":30.5`, "heartbeat_timeout", "Invalid integer"},
		{"heartbeat_timeout not a number", `"id":"svc-1","heartbeat_timeout":"abc"`, "heartbeat_timeout", "Invalid integer"},
		{"heartbeat_timeout an exponent string", `"id":"svc-1","heartbeat_timeout":"3e1"`, "heartbeat_timeout", "Invalid integer"},
		{"heartbeat_timeout a fractional string", `"id":"svc-1","heartbeat_timeout":"30.5"`, "heartbeat_timeout", "Invalid integer"},
		{"heartbeat_timeout an array", `"id":"svc-1","heartbeat_timeout":[30]`, "heartbeat_timeout", "Invalid integer"},
		{"heartbeat_timeout fractional out of range", `"id":"svc-1","heartbeat_timeout":2.5`, "heartbeat_timeout", "Invalid integer"},
		{"heartbeat_timeout 2", `"id":"svc-1","heartbeat_timeout":2`, "heartbeat_timeout", "Value out of range (3..120)"},
		{"heartbeat_timeout 121", `"id":"svc-1","heartbeat_timeout":121`, "heartbeat_timeout", "Value out of range (3..120)"},
		{"heartbeat_timeout negative", `"id":"svc-1","heartbeat_timeout":-5`, "heartbeat_timeout", "Value out of range (3..120)"},
		{"heartbeat_timeout string out of range", `"id":"svc-1","heartbeat_timeout":"2"`, "heartbeat_timeout", "Value out of range (3..120)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			c.do("POST", "/services", "{"+tc.body+"}").invalid(tc.key, tc.details)
			if svcs, _ := list[service](c.do("GET", "/services", nil)); len(svcs) != 0 {
				t.Errorf("a refused create stored %+v", svcs)
			}
		})
	}
}

// spec §5.1: what a create accepts, and how it is stored: integer strings
// and integer-valued numbers as numbers, null tags and metadata as [] and
// {}, keys not in the schema dropped, last_seen not writable.
func TestCreateServiceAccepted(t *testing.T) { onEachStore(t, testCreateServiceAccepted) }

func testCreateServiceAccepted(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	a := strings.Repeat
	tenTags := `["1","2","3","4","5","6","7","8","9","10"]`
	twentyMeta := manyItems(20, true)
	twentyMeta = strings.ReplaceAll(twentyMeta, ":1", `:"v"`)
	for _, tc := range []struct {
		name, body string
		want       service
	}{
		{"minimal", `{"id":"svc-1","heartbeat_timeout":30}`,
			service{ID: "svc-1", Tags: []string{}, Metadata: map[string]string{}, HeartbeatTimeout: 30}},
		{"upper case and punctuation", `{"id":"Svc_1.A-b","heartbeat_timeout":3}`,
			service{ID: "Svc_1.A-b", Tags: []string{}, Metadata: map[string]string{}, HeartbeatTimeout: 3}},
		{"longest id", `{"id":"` + a("i", 65) + `","heartbeat_timeout":120}`,
			service{ID: a("i", 65), Tags: []string{}, Metadata: map[string]string{}, HeartbeatTimeout: 120}},
		{"timeout as a string", `{"id":"svc-1","heartbeat_timeout":"30"}`,
			service{ID: "svc-1", Tags: []string{}, Metadata: map[string]string{}, HeartbeatTimeout: 30}},
		{"timeout as 30.0", `{"id":"svc-1","heartbeat_timeout":30.0}`,
			service{ID: "svc-1", Tags: []string{}, Metadata: map[string]string{}, HeartbeatTimeout: 30}},
		{"null tags and metadata", `{"id":"svc-1","tags":null,"metadata":null,"heartbeat_timeout":30}`,
			service{ID: "svc-1", Tags: []string{}, Metadata: map[string]string{}, HeartbeatTimeout: 30}},
		{"ten tags, twenty metadata, any characters", `{"id":"svc-1","tags":` + tenTags + `,"metadata":` + twentyMeta + `,"heartbeat_timeout":30}`,
			service{ID: "svc-1", Tags: []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}, Metadata: func() map[string]string {
				m := map[string]string{}
				for i := range 20 {
					m[fmt.Sprintf("k%d", i)] = "v"
				}
				return m
			}(), HeartbeatTimeout: 30}},
		{"longest tag, key and value; odd characters", `{"id":"svc-1","tags":["` + a("t", 55) + `","web server","ünï"],"metadata":{"` + a("k", 255) + `":"` + a("v", 255) + `","a b":"c/d"},"heartbeat_timeout":30}`,
			service{ID: "svc-1", Tags: []string{a("t", 55), "web server", "ünï"}, Metadata: map[string]string{a("k", 255): a("v", 255), "a b": "c/d"}, HeartbeatTimeout: 30}},
		{"keys not in the schema", `{"id":"svc-1","heartbeat_timeout":30,"last_seen":1369146000123,"session_id":"x","foo":{"bar":1}}`,
			service{ID: "svc-1", Tags: []string{}, Metadata: map[string]string{}, HeartbeatTimeout: 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			c.createBody(tc.body)
			var raw map[string]any
			r := c.do("GET", "/services/"+tc.want.ID, nil).want(200)
			r.json(&raw)
			if _, ok := raw["heartbeat_timeout"].(float64); !ok {
				t.Errorf("heartbeat_timeout is not a number: %s", r.body)
			}
			if len(raw) != 5 {
				t.Errorf("service has keys beyond the five of spec §6.1: %s", r.body)
			}
			var got service
			r.json(&got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("stored %+v, want %+v", got, tc.want)
			}
		})
	}
}

// spec §5.1 and §7.5: an update checks only the keys present, in schema
// order; an id equal to the path's is fine, another one is refused.
func TestUpdateServiceValidation(t *testing.T) { onEachStore(t, testUpdateServiceValidation) }

func testUpdateServiceValidation(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	for _, tc := range []struct {
		name, body   string
		key, details string // "" when accepted
	}{
		{"empty object", `{}`, "", ""},
		{"only a timeout", `{"heartbeat_timeout":15}`, "", ""},
		{"timeout as a string", `{"heartbeat_timeout":"15"}`, "", ""},
		{"the same id", `{"id":"svc-1","tags":["a"]}`, "", ""},
		{"null tags and metadata", `{"tags":null,"metadata":null}`, "", ""},
		{"unknown keys", `{"foo":1,"last_seen":5}`, "", ""},
		{"another id", `{"id":"svc-2"}`, "id", "Attempted to mutate immutable field"},
		{"bad id", `{"id":"ab"}`, "id", "String is not in range (3..65)"},
		{"id before tags", `{"id":5,"tags":5}`, "id", "Not a string"},
		{"tags not an array", `{"tags":"abc"}`, "tags", "Not an array"},
		{"tags 11 items", `{"tags":` + manyItems(11, false) + `}`, "tags", "Object needs to have between 0 and 10 items"},
		{"tags item empty", `{"tags":[""]}`, "tags", "String is not in range (1..55)"},
		{"tags before metadata", `{"metadata":5,"tags":5}`, "tags", "Not an array"},
		{"metadata not a hash", `{"metadata":["a"]}`, "metadata", "Not a hash"},
		{"metadata value", `{"metadata":{"k":5}}`, "metadata", "Value for key 'k': Not a string"},
		{"metadata before timeout", `{"heartbeat_timeout":1,"metadata":5}`, "metadata", "Not a hash"},
		{"timeout out of range", `{"heartbeat_timeout":2}`, "heartbeat_timeout", "Value out of range (3..120)"},
		{"timeout not an integer", `{"heartbeat_timeout":"x"}`, "heartbeat_timeout", "Invalid integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			c.createBody(`{"id":"svc-1","tags":["old"],"metadata":{"k":"v"},"heartbeat_timeout":30}`)
			r := c.do("PUT", "/services/svc-1", tc.body)
			if tc.key == "" {
				r.want(204)
				return
			}
			r.invalid(tc.key, tc.details)
			got := c.service("svc-1")
			if got.HeartbeatTimeout != 30 || !reflect.DeepEqual(got.Tags, []string{"old"}) || !reflect.DeepEqual(got.Metadata, map[string]string{"k": "v"}) {
				t.Errorf("a refused update changed the service: %+v", got)
			}
			c.do("GET", "/services/svc-2", nil).notFound("Service", "svc-2")
		})
	}
}

// spec §5.1: the service id in the URL of GET, PUT and DELETE follows the
// id rule; the heartbeat route does not check it.
func TestServiceIDInPath(t *testing.T) { onEachStore(t, testServiceIDInPath) }

func testServiceIDInPath(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	for _, tc := range []struct {
		name, id, details string // details "" when the id is valid
	}{
		{"too short", "ab", "String is not in range (3..65)"},
		{"too long", strings.Repeat("a", 66), "String is not in range (3..65)"},
		{"encoded space", "a%20b%20c", "Invalid characters"},
		{"encoded slash", "abc%2Fdef", "Invalid characters"},
		{"star", "a*b", "Invalid characters"},
		{"Kelvin sign", "%E2%84%AAab", "Invalid characters"},
		{"encoded short", "%61b", "String is not in range (3..65)"},
		{"valid, upper case", "ABC-1.x_y", ""},
		{"valid, encoded", "%61bc", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			for _, m := range []struct {
				method string
				body   any
			}{{"GET", nil}, {"PUT", map[string]any{}}, {"DELETE", nil}} {
				r := c.do(m.method, "/services/"+tc.id, m.body)
				if tc.details == "" {
					r.want(404)
					continue
				}
				r.fault(400, "badRequest", "Invalid value for 'serviceId' query string parameter", tc.details)
			}
		})
	}
	t.Run("heartbeat does not check it", func(t *testing.T) {
		t.Parallel()
		newAPI(t, srv).heartbeat("ab", "6ba7b810-9dad-11d1-80b4-00c04fd430c8").notFound("Service", "ab")
	})
}

// spec §5.1 (heartbeat) and §5.3: token is required, a string, and a v1
// UUID; the body is checked before the service is looked up.
func TestHeartbeatValidation(t *testing.T) { onEachStore(t, testHeartbeatValidation) }

func testHeartbeatValidation(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	for _, tc := range []struct {
		name, body, details string
	}{
		{"no token", `{}`, "Missing required key (token)"},
		{"other keys only", `{"tokens":"x"}`, "Missing required key (token)"},
		{"token a number", `{"token":5}`, "Not a string"},
		{"token null", `{"token":null}`, "Not a string"},
		{"token not a UUID", `{"token":"abc"}`, "Invalid UUID"},
		{"token variant", `{"token":"6ba7b810-9dad-11d1-c0b4-00c04fd430c8"}`, "Unsupported UUID variant"},
		{"token version 4", `{"token":"6ba7b810-9dad-41d1-80b4-00c04fd430c8"}`, "UUID is not version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			c.create("svc-1", 30)
			c.do("POST", "/services/svc-1/heartbeat", tc.body).invalid("token", tc.details)
			c.do("POST", "/services/no-such-service/heartbeat", tc.body).invalid("token", tc.details)
		})
	}
}

// spec §5.3: the v1 UUID rule, as applied to heartbeat tokens and to
// events markers.
func TestUUIDRule(t *testing.T) { onEachStore(t, testUUIDRule) }

func testUUIDRule(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	c := newAPI(t, srv)
	c.create("svc-1", 30)
	// base is a valid v1 UUID at a time the events feed accepts.
	time.Sleep(5 * time.Millisecond)
	base := lowUUID(time.Now())
	set := func(i int, ch byte) string { return base[:i] + string(ch) + base[i+1:] }
	for _, tc := range []struct {
		name, uuid, details string // details "" when valid
	}{
		{"valid", base, ""},
		{"valid upper case", strings.ToUpper(base), ""},
		{"variant 9", set(19, '9'), ""},
		{"variant a", set(19, 'a'), ""},
		{"variant B", set(19, 'B'), ""},
		{"zero", "0", "Invalid UUID"},
		{"one short", base[:35], "Invalid UUID"},
		{"one long", base + "0", "Invalid UUID"},
		{"no dashes", strings.ReplaceAll(base, "-", "") + "0000", "Invalid UUID"},
		{"dash moved", set(8, '0')[:9] + "-" + base[10:], "Invalid UUID"},
		{"not hex", set(0, 'g'), "Invalid UUID"},
		{"braces", "{" + base[1:35] + "}", "Invalid UUID"},
		{"variant 0", set(19, '0'), "Unsupported UUID variant"},
		{"variant 7", set(19, '7'), "Unsupported UUID variant"},
		{"variant c", set(19, 'c'), "Unsupported UUID variant"},
		{"variant F", set(19, 'F'), "Unsupported UUID variant"},
		{"version 4", set(14, '4'), "UUID is not version 1"},
		{"version 2", set(14, '2'), "UUID is not version 1"},
		{"version 0", set(14, '0'), "UUID is not version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hb := c.heartbeat("svc-1", tc.uuid)
			ev := c.do("GET", "/events?marker="+tc.uuid, nil)
			if tc.details == "" {
				hb.notFound("HeartbeatMarker", tc.uuid) // as sent: lookup is exact
				ev.want(200)
				return
			}
			hb.invalid("token", tc.details)
			ev.badRequest(tc.details)
		})
	}
}

// spec §5.1: a set-value body has an optional id (checked, then ignored)
// and a value of 1..1024 characters, checked in that order.
func TestConfigValueValidation(t *testing.T) { onEachStore(t, testConfigValueValidation) }

func testConfigValueValidation(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	for _, tc := range []struct {
		name, body   string
		key, details string // "" when accepted
	}{
		{"value", `{"value":"v"}`, "", ""},
		{"longest value", `{"value":"` + strings.Repeat("v", 1024) + `"}`, "", ""},
		{"value counted in characters", `{"value":"` + strings.Repeat("é", 1024) + `"}`, "", ""},
		{"1024 UTF-16 units", `{"value":"` + strings.Repeat("😀", 512) + `"}`, "", ""},
		{"another valid id is ignored", `{"id":"/other/key","value":"v"}`, "", ""},
		{"no value", `{}`, "value", "Missing required key (value)"},
		{"value a number", `{"value":5}`, "value", "Not a string"},
		{"value null", `{"value":null}`, "value", "Not a string"},
		{"value an object", `{"value":{"a":"b"}}`, "value", "Not a string"},
		{"value empty", `{"value":""}`, "value", "String is not in range (1..1024)"},
		{"value too long", `{"value":"` + strings.Repeat("v", 1025) + `"}`, "value", "String is not in range (1..1024)"},
		{"value over 1024 UTF-16 units", `{"value":"` + strings.Repeat("😀", 513) + `"}`, "value", "String is not in range (1..1024)"},
		{"id too short", `{"id":"ab","value":"v"}`, "id", "String is not in range (3..500)"},
		{"id bad characters", `{"id":"a b c","value":"v"}`, "id", `Invalid characters in the key name "a b c": a-z, 0-9, _, - and . only`},
		{"id a number", `{"id":5,"value":"v"}`, "id", "Not a string"},
		{"id before value", `{"id":"ab"}`, "id", "String is not in range (3..500)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			r := c.do("PUT", "/configuration/key-1", tc.body)
			if tc.key != "" {
				r.invalid(tc.key, tc.details)
				c.do("GET", "/configuration/key-1", nil).notFound("ConfigurationValue", "key-1")
				return
			}
			r.want(204)
			var body struct {
				Value string `json:"value"`
			}
			json.Unmarshal([]byte(tc.body), &body)
			var got configValue
			c.do("GET", "/configuration/key-1", nil).want(200).json(&got)
			if got != (configValue{ID: "key-1", Value: body.Value}) {
				t.Errorf("stored %+v, want key-1 = %q", got, body.Value)
			}
			if vals, _ := list[configValue](c.do("GET", "/configuration", nil)); len(vals) != 1 {
				t.Errorf("values %+v, want only key-1 (the body id is ignored)", vals)
			}
		})
	}
}

// spec §5.1: the configuration id rule, as applied to the URL of PUT,
// DELETE and a single GET.
func TestConfigIDRule(t *testing.T) { onEachStore(t, testConfigIDRule) }

func testConfigIDRule(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	a := strings.Repeat
	for _, tc := range []struct {
		name, id string
		details  string // "" when valid
		noGet    bool   // a GET of this path is not a single get
	}{
		{"plain", "my-value-1", "", false},
		{"dots", "test.value.two", "", false},
		{"namespaced", "/production/cassandra", "", false},
		{"deeper", "/production/agent_endpoint/fb303.port", "", false},
		{"ten namespaces", a("/aaa", 10) + "/key", "", false},
		{"longest key part", a("k", 170), "", false},
		{"longest namespace segment", "/" + a("n", 50) + "/key", "", false},
		{"upper case", "/Production/Key.One", "", false},
		{"too short", "ab", "String is not in range (3..500)", false},
		{"slash alone", "/", "String is not in range (3..500)", true},
		{"too long", a("/aaaaaaaaa", 49) + "/" + a("k", 20), "String is not in range (3..500)", false},
		{"dot in a namespace", "/production.foo/test", `Invalid characters in the namespace segment "production.foo": a-z, 0-9, _ and - only`, false},
		{"key part too long", a("a", 199), `The key name "` + a("a", 199) + `" is not in range (3..170)`, false},
		{"key part 171", a("k", 171), `The key name "` + a("k", 171) + `" is not in range (3..170)`, false},
		{"namespace segment 51", "/" + a("n", 51) + "/key", `The namespace segment "` + a("n", 51) + `" is not in range (3..50)`, false},
		{"namespace segment too short", "/ab/key", `The namespace segment "ab" is not in range (3..50)`, false},
		{"key name too short", "/production/x", `The key name "x" is not in range (3..170)`, false},
		{"eleven namespaces", a("/aaa", 11) + "/key", "Invalid key: 11 namespace segments, at most 10", false},
		{"slash without a leading slash", "production/cassandra", `Invalid key "production/cassandra": a namespaced key begins with / (as in /production/cassandra)`, true},
		{"trailing slash after a dotted key", "/production/test.x/", `Invalid characters in the namespace segment "test.x": a-z, 0-9, _ and - only`, true},
		{"space", "my%20value", `Invalid characters in the key name "my value": a-z, 0-9, _, - and . only`, false},
		{"Kelvin sign", "%E2%84%AAey", "Invalid characters in the key name \"\u212aey\": a-z, 0-9, _, - and . only", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			put := c.do("PUT", "/configuration/"+tc.id, map[string]string{"value": "v"})
			var get *reply
			if !tc.noGet {
				get = c.do("GET", "/configuration/"+tc.id, nil)
			}
			del := c.do("DELETE", "/configuration/"+tc.id, nil)
			if tc.details == "" {
				put.want(204)
				get.want(200)
				del.want(204)
				return
			}
			for _, r := range []*reply{put, get, del} {
				if r != nil {
					r.fault(400, "badRequest", "Invalid value for 'configurationId' query string parameter", tc.details)
				}
			}
		})
	}
}

// spec §5.1 and design item 8: the tag query parameter takes any tag a
// service may carry, 1..55 characters without control characters.
func TestTagQueryRule(t *testing.T) { onEachStore(t, testTagQueryRule) }

func testTagQueryRule(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind})
	for _, tc := range []struct {
		name, query, details string // details "" when valid
	}{
		{"short", "tag=db", ""},
		{"one character", "tag=x", ""},
		{"space", "tag=web%20server", ""},
		{"quote", "tag=%27", ""},
		{"non-ASCII", "tag=%C3%BCn%C3%AF", ""},
		{"longest", "tag=" + strings.Repeat("t", 55), ""},
		{"empty", "tag=", "String is not in range (1..55)"},
		{"too long", "tag=" + strings.Repeat("t", 56), "String is not in range (1..55)"},
		{"CRLF", "tag=a%0D%0Ab", "Invalid characters"},
		{"NUL", "tag=ab%00", "Invalid characters"},
		{"tab", "tag=a%09b", "Invalid characters"},
		{"repeated", "tag=db&tag=web", "Not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newAPI(t, srv).do("GET", "/services?"+tc.query, nil)
			if tc.details == "" {
				list[service](r)
				return
			}
			r.fault(400, "badRequest", "Invalid value for 'tag' query string parameter", tc.details)
		})
	}
}
