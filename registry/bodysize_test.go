package registry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/registry"
)

// CreateServiceBodySize is the size the registry counts: a create of
// MaxRequestBody-1 bytes is taken, one of MaxRequestBody is refused.
func TestCreateServiceBodySize(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	c, err := registry.New(registry.Config{URL: srv.APIURL, Username: "body-size", APIKey: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	// Sized with a value that JSON escapes (< takes 6 bytes).
	sized := func(id string, size int) registry.Service {
		s := registry.Service{ID: id, HeartbeatTimeout: 30, Tags: []string{"a<b"}, Metadata: map[string]string{}}
		for i := 0; registry.CreateServiceBodySize(s) < size; i++ {
			key := "k" + string(rune('a'+i))
			s.Metadata[key] = "v"
			if left := size - registry.CreateServiceBodySize(s); left < 255 {
				s.Metadata[key] += strings.Repeat("v", left)
			} else {
				s.Metadata[key] = strings.Repeat("v", 255)
			}
		}
		if got := registry.CreateServiceBodySize(s); got != size {
			t.Fatalf("built a service of %d bytes, want %d", got, size)
		}
		return s
	}
	if _, err := c.CreateService(testContext(t), sized("just-fits", registry.MaxRequestBody-1)); err != nil {
		t.Errorf("a create of %d bytes: %v", registry.MaxRequestBody-1, err)
	}
	_, err = c.CreateService(testContext(t), sized("too-large", registry.MaxRequestBody))
	var e *registry.Error
	if !errors.As(err, &e) || e.StatusCode != 413 {
		t.Errorf("a create of %d bytes: %v, want 413", registry.MaxRequestBody, err)
	}
}
