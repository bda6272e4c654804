package render

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/svcreg/svcreg/registry"
)

// A template holds no state of its own while it executes: one template
// renders on several snapshots at once, and each render sees only its own
// snapshot, its own refusals and its own min_instances count.
func TestTemplateRendersConcurrently(t *testing.T) {
	t.Parallel()
	tmpl := newSet(t, TemplateConfig{
		Contents:     `{{range endpoints services}}{{.Name}}={{.HostPort}};{{end}}`,
		Destination:  t.TempDir() + "/out.conf",
		MinInstances: 2,
	}).Groups[0].Templates[0]
	const renders = 16
	var wg sync.WaitGroup
	errs := make([]error, renders+1)
	for i := 1; i <= renders; i++ {
		wg.Go(func() {
			// Render i has i services whose data is fine, and one whose
			// port is refused.
			var list []registry.Service
			for j := range i {
				list = append(list, svc(fmt.Sprintf("s%d-%d", i, j), nil, map[string]string{"ip": "10.0.0.1", "port": "80"}))
			}
			list = append(list, svc(fmt.Sprintf("bad%d", i), nil, map[string]string{"ip": "10.0.0.1", "port": "80;"}))
			for range 20 {
				out, refused, err := tmpl.execute(t.Context(), snapshot(list...))
				if i == 1 {
					var guard *GuardError
					if !errors.As(err, &guard) || guard.Got != 1 || !strings.HasPrefix(guard.Call, "endpoints") {
						errs[i] = fmt.Errorf("render %d: err = %v; want min_instances refusing its 1 endpoint", i, err)
						return
					}
					continue
				}
				if err != nil {
					errs[i] = fmt.Errorf("render %d: %v", i, err)
					return
				}
				if n := strings.Count(string(out), ";"); n != i || !strings.Contains(string(out), fmt.Sprintf("s%d-0=", i)) {
					errs[i] = fmt.Errorf("render %d: output %q; want its own %d services", i, out, i)
					return
				}
				if len(refused) != 1 || refused[0].Service != fmt.Sprintf("bad%d", i) {
					errs[i] = fmt.Errorf("render %d: refused %+v; want its own bad%d", i, refused, i)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
