package registry_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/svcreg/svcreg/registry"
)

func TestTemporary(t *testing.T) {
	t.Parallel()
	fault := func(status int, typ string) error {
		return fmt.Errorf("register: %w", &registry.Error{Method: "POST", URL: "http://registry/services", StatusCode: status, Type: typ})
	}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"network error", errors.New("dial tcp 127.0.0.1:1: connection refused"), true},
		{"internal error", fault(http.StatusInternalServerError, registry.FaultInternal), true},
		{"bad gateway without a fault body", fault(http.StatusBadGateway, ""), true},
		{"unauthorized", fault(http.StatusUnauthorized, registry.FaultUnauthorized), true},
		{"request timeout", fault(http.StatusRequestTimeout, ""), true},
		{"too many requests", fault(http.StatusTooManyRequests, ""), true},
		{"rate limit fault", fault(http.StatusRequestEntityTooLarge, registry.FaultRateLimit), true},
		{"bad request", fault(http.StatusBadRequest, registry.FaultBadRequest), false},
		{"service exists", fault(http.StatusConflict, registry.FaultServiceExists), false},
		{"limit reached", fault(http.StatusConflict, registry.FaultLimitReached), false},
		{"not found", fault(http.StatusNotFound, registry.FaultNotFound), false},
	} {
		if got := registry.Temporary(tt.err); got != tt.want {
			t.Errorf("%s: Temporary(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
