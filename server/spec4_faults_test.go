package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// spec §4.3: every row of the catalogue of faults, with its exact type,
// message and details, code equal to the status and txnId equal to
// X-Response-Id. Each case runs in a tenant of its own on a server whose
// accounts may hold one service and one value.
func TestFaultCatalogue(t *testing.T) { onEachStore(t, testFaultCatalogue) }

func testFaultCatalogue(t *testing.T, kind string) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{Store: kind, Limits: store.Limits{Services: 1, ConfigValues: 1}})
	const markerChars = `Marker contains invalid characters. Valid characters are: /^[a-z0-9\-:_\.\/]{0,255}$/i`
	const validTypes = "service.join,service.remove,service.timeout,configuration_value.update,configuration_value.remove"
	unknownToken := "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	// requestedPath is the details object of an unknown route.
	requestedPath := func(uri string) func(c *api) any {
		return func(c *api) any { return map[string]any{"requested_path": "/v1.0/" + c.tenant + uri} }
	}
	for _, tc := range []struct {
		row          string
		setup        func(c *api)
		method, path string
		body         any
		header       []string
		code         int
		typ, message string
		details      any // as for reply.fault, or a func(*api) any
	}{
		{row: "body field fails validation", method: "POST", path: "/services", body: map[string]any{"id": "ab", "heartbeat_timeout": 30},
			code: 400, typ: "badRequest", message: "Validation error for key 'id'", details: "String is not in range (3..65)"},
		{row: "path serviceId fails validation", method: "GET", path: "/services/ab",
			code: 400, typ: "badRequest", message: "Invalid value for 'serviceId' query string parameter", details: "String is not in range (3..65)"},
		{row: "path configurationId fails validation", method: "PUT", path: "/configuration/a", body: map[string]string{"value": "v"},
			code: 400, typ: "badRequest", message: "Invalid value for 'configurationId' query string parameter", details: "String is not in range (3..500)"},
		{row: "tag query parameter fails validation", method: "GET", path: "/services?tag=",
			code: 400, typ: "badRequest", message: "Invalid value for 'tag' query string parameter", details: "String is not in range (1..55)"},
		{row: "services marker has bad characters", method: "GET", path: "/services?marker=a%20b",
			code: 400, typ: "badRequest", message: "Invalid value for 'marker' query string parameter", details: markerChars},
		{row: "configuration marker has bad characters", method: "GET", path: "/configuration?marker=%3F",
			code: 400, typ: "badRequest", message: "Invalid value for 'marker' query string parameter", details: markerChars},
		{row: "limit not all digits", method: "GET", path: "/services?limit=abc",
			code: 400, typ: "invalidLimit", message: "Invalid limit", details: "Limit must be a number"},
		{row: "limit out of range", method: "GET", path: "/services?limit=1001",
			code: 400, typ: "invalidLimit", message: "Invalid limit", details: "Invalid limit 1001. Minimum limit is 1 and maximum limit is 1000."},
		{row: "unsupported Content-Type", method: "GET", path: "/services", header: []string{"Content-Type", "text/html"},
			code: 400, typ: "badRequest", message: "Unsupported content type: text/html", details: "Unsupported content type: text/html"},
		{row: "body is not JSON", method: "POST", path: "/services", body: "{",
			code: 400, typ: "badRequest", details: prefixed("Failed to parse request body: ")},
		{row: "body is JSON null", method: "POST", path: "/services", body: "null",
			code: 400, typ: "badRequest", message: "Empty Request Body", details: "Empty Request Body"},
		{row: "bad percent-encoding in the path", method: "GET", path: "/services/%80",
			code: 400, typ: "badRequest", message: "URI malformed", details: "URI malformed"},
		{row: "events marker is not a UUID", method: "GET", path: "/events?marker=0",
			code: 400, typ: "badRequest", message: "Invalid UUID", details: "Invalid UUID"},
		{row: "events marker has an unsupported variant", method: "GET", path: "/events?marker=6ba7b810-9dad-11d1-c0b4-00c04fd430c8",
			code: 400, typ: "badRequest", message: "Unsupported UUID variant", details: "Unsupported UUID variant"},
		{row: "events marker is not version 1", method: "GET", path: "/events?marker=6ba7b810-9dad-41d1-80b4-00c04fd430c8",
			code: 400, typ: "badRequest", message: "UUID is not version 1", details: "UUID is not version 1"},
		{row: "events marker later than now", method: "GET", path: "/events?marker=" + lowUUID(time.Now().Add(time.Hour)),
			code: 400, typ: "badRequest", message: "from parameter must be smaller than the current time", details: "from parameter must be smaller than the current time"},
		{row: "events marker before the account's creation", method: "GET", path: "/events?marker=" + lowUUID(time.Now().Add(-time.Hour)),
			code: 400, typ: "badRequest", message: "from parameter must be greater than or equal to the account creation date", details: "from parameter must be greater than or equal to the account creation date"},
		{row: "events type not allowed", method: "GET", path: "/events?type=service.joined",
			code: 400, typ: "badRequest", message: "Invalid type: service.joined. Valid types are: " + validTypes, details: "Invalid type: service.joined. Valid types are: " + validTypes},
		{row: "events type repeated", method: "GET", path: "/events?type=service.join&type=service.remove",
			code: 400, typ: "badRequest", message: "Invalid type: service.join,service.remove. Valid types are: " + validTypes, details: "Invalid type: service.join,service.remove. Valid types are: " + validTypes},
		{row: "duplicate service id", setup: func(c *api) { c.create("svc-1", 30) }, method: "POST", path: "/services", body: map[string]any{"id": "svc-1", "heartbeat_timeout": 30},
			code: 400, typ: "serviceWithThisIdExists", message: "Service with id svc-1 already exists.", details: "Service with id svc-1 already exists."},
		{row: "service limit", setup: func(c *api) { c.create("svc-1", 30) }, method: "POST", path: "/services", body: map[string]any{"id": "svc-2", "heartbeat_timeout": 30},
			code: 400, typ: "limitReached", message: "Resource limit has been reached", details: "Limit for resource service has been reached. Maximum allowed objects: 1"},
		{row: "configuration value limit", setup: func(c *api) { c.setConfig("key-1", "v") }, method: "PUT", path: "/configuration/key-2", body: map[string]string{"value": "v"},
			code: 400, typ: "limitReached", message: "Resource limit has been reached", details: "Limit for resource configuration_value has been reached. Maximum allowed objects: 1"},
		{row: "service missing", method: "GET", path: "/services/nonExistentService",
			code: 404, typ: "notFoundError", message: "object does not exist", details: `Object "Service" with key "nonExistentService" does not exist`},
		{row: "configuration value missing", method: "GET", path: "/configuration/nonExistentConfig",
			code: 404, typ: "notFoundError", message: "object does not exist", details: `Object "ConfigurationValue" with key "nonExistentConfig" does not exist`},
		{row: "heartbeat token missing", setup: func(c *api) { c.create("svc-1", 30) }, method: "POST", path: "/services/svc-1/heartbeat", body: map[string]string{"token": unknownToken},
			code: 404, typ: "notFoundError", message: "object does not exist", details: `Object "HeartbeatMarker" with key "` + unknownToken + `" does not exist`},
		{row: "unknown route", method: "GET", path: "/random-url?x=1",
			code: 404, typ: "notFoundError", message: "The page cannot be found.", details: requestedPath("/random-url?x=1")},
		{row: "body too large", method: "POST", path: "/services", body: strings.Repeat(" ", 5000), code: 413},
	} {
		t.Run(tc.row, func(t *testing.T) {
			t.Parallel()
			c := newAPI(t, srv)
			if tc.setup != nil {
				tc.setup(c)
			}
			r := c.do(tc.method, tc.path, tc.body, tc.header...)
			if tc.code == 413 {
				r.tooLarge()
				return
			}
			details := tc.details
			if f, ok := details.(func(*api) any); ok {
				details = f(c)
			}
			r.fault(tc.code, tc.typ, tc.message, details)
		})
	}
}

// failingStore fails every services list with err.
type failingStore struct {
	store.Store
	err error
}

func (f failingStore) Services(context.Context, string, store.ServiceQuery) (store.Page[registry.Service], error) {
	return store.Page[registry.Service]{}, f.err
}

// spec §4.1 and §4.3 "anything unexpected": a 5xx has message and details
// masked as "Internal Error".
func TestServerErrorsAreMasked(t *testing.T) { onEachStore(t, testServerErrorsAreMasked) }

func testServerErrorsAreMasked(t *testing.T, kind string) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code int
		typ  string
	}{
		{errors.New("disk on fire at /var/lib/svcreg"), 500, "internalError"},
		{fmt.Errorf("etcd: %w", store.ErrUnavailable), 503, "systemFailureError"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			base, _ := startWrapped(t, kind, func(st store.Store) failingStore { return failingStore{Store: st, err: tc.err} })
			c := devLogin(t, base, "failing")
			c.do("GET", "/services", nil).fault(tc.code, tc.typ, "Internal Error", "Internal Error")
			c.do("GET", "/configuration", nil).want(200)
		})
	}
}
