package render

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// A template cannot change the snapshot it reads: sortAlpha sorts a copy
// of a service's Tags, and the dict functions refuse a service's Metadata.
// Run with -race: the watcher reads the snapshot while templates render.
func TestTemplatesCannotMutateSnapshot(t *testing.T) {
	t.Parallel()
	tags := []string{"z", "y", "x", "w", "v"}
	snap := snapshot(svc("a", slices.Clone(tags), map[string]string{"ip": "10.0.0.1", "port": "80"}))
	set := newSet(t, TemplateConfig{Contents: `{{range services}}{{sortAlpha .Tags}}{{sortAlpha (slice .Tags 1 3)}}{{end}}`,
		Destination: filepath.Join(t.TempDir(), "x")})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			if s := snap.ServicesWithTag("z"); len(s) != 1 || !slices.Equal(s[0].Tags, tags) {
				t.Errorf("the snapshot's tags changed during a render: %v", s)
				return
			}
		}
	}()
	out, err := set.Groups[0].Templates[0].Render(snap)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "[v w x y z][x y]" {
		t.Errorf("rendered %q", out)
	}
	if got := snap.Services()[0].Tags; !slices.Equal(got, tags) {
		t.Errorf("the render sorted the snapshot's tags: %v, want %v", got, tags)
	}

	for _, tc := range []string{
		`{{range services}}{{set .Metadata "ip" "6.6.6.6"}}{{end}}`,
		`{{range services}}{{unset .Metadata "ip"}}{{end}}`,
		`{{range services}}{{merge .Metadata (dict "ip" "6.6.6.6")}}{{end}}`,
		`{{range services}}{{mergeOverwrite .Metadata (dict "ip" "6.6.6.6")}}{{end}}`,
	} {
		set := newSet(t, TemplateConfig{Contents: tc, Destination: filepath.Join(t.TempDir(), "x")})
		_, err := set.Groups[0].Templates[0].Render(snap)
		if err == nil || !strings.Contains(err.Error(), "map[string]string") {
			t.Errorf("%s: err = %v, want a type error", tc, err)
		}
		if md := snap.Services()[0].Metadata; md["ip"] != "10.0.0.1" || len(md) != 2 {
			t.Errorf("%s changed the snapshot's metadata: %v", tc, md)
		}
	}
}

// A method with a pointer receiver can be called on the elements of a
// slice a template ranges over: {{.UnmarshalJSON}} would overwrite a
// shared service. A template that names one fails to load.
func TestTemplatesCannotCallMutatingMethods(t *testing.T) {
	t.Parallel()
	for _, tc := range []string{
		`{{range services}}{{.UnmarshalJSON ((service "b").MarshalJSON)}}{{end}}`,
		`{{range $s := services}}{{$s.UnmarshalJSON ((service "b").MarshalJSON)}}{{end}}`,
		`{{(index services 0).UnmarshalJSON ((service "b").MarshalJSON)}}`,
		`{{define "x"}}{{if .}}{{else}}{{with services}}{{range .}}{{call .UnmarshalJSON nil}}{{end}}{{end}}{{end}}{{end}}{{template "x" 0}}`,
	} {
		c := Config{Templates: []TemplateConfig{{Contents: tc, Destination: filepath.Join(t.TempDir(), "x")}}}
		if err := c.Normalize(); err != nil {
			t.Fatal(err)
		}
		if _, err := NewSet(c); err == nil || !strings.Contains(err.Error(), "UnmarshalJSON would change the registry snapshot") {
			t.Errorf("%s: err = %v; want the template refused", tc, err)
		}
	}
	// A field's own are as addressable: {{.LastSeen.UnmarshalText}}
	// would set a shared service's last heartbeat.
	for _, tc := range []string{
		`{{range services}}{{.LastSeen.UnmarshalText ((toDate "2006-01-02" "1999-01-01").MarshalText)}}{{end}}`,
		`{{range services}}{{.LastSeen.GobDecode nil}}{{end}}`,
	} {
		c := Config{Templates: []TemplateConfig{{Contents: tc, Destination: filepath.Join(t.TempDir(), "x")}}}
		if err := c.Normalize(); err != nil {
			t.Fatal(err)
		}
		if _, err := NewSet(c); err == nil || !strings.Contains(err.Error(), "would change the registry snapshot") {
			t.Errorf("%s: err = %v; want the template refused", tc, err)
		}
	}
	// What a template may call stays callable.
	snap := snapshot(svc("a", []string{"x"}, map[string]string{"ip": "10.0.0.1", "port": "80"}))
	set := newSet(t, TemplateConfig{Contents: `{{range services}}{{.HasTag "x"}} {{printf "%s" .MarshalJSON}}{{end}}`, Destination: filepath.Join(t.TempDir(), "x")})
	if out, err := set.Groups[0].Templates[0].Render(snap); err != nil || !strings.HasPrefix(string(out), `true {"id":"a"`) {
		t.Errorf("got %q, %v", out, err)
	}
}
