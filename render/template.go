package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/svcreg/svcreg/watcher"
)

// Set is a parsed configuration: every template parsed once, gathered into
// reload groups. A Set is immutable; a reload builds a new one.
type Set struct {
	Config Config
	Groups []*Group
}

// Group is a reload group: templates checked, installed and reloaded
// together. NewSet builds it from the templates' TemplateConfig (their
// reload_group); its fields are those settings, read and not to be set.
type Group struct {
	// Name is the reload_group; Normalize makes it the destination of a
	// template that names none.
	Name      string
	Templates []*Template
	// Check and CheckTimeout: the check command (see TemplateConfig.Check)
	// and its bound.
	Check        string
	CheckTimeout time.Duration
	// Reload and ReloadTimeout: the command run once after the group's
	// files are installed, and its bound.
	Reload        string
	ReloadTimeout time.Duration
	// ReloadSignal, when not 0, reloads by signalling the [exec] command
	// instead of running Reload.
	ReloadSignal syscall.Signal
	// MinReloadInterval and Splay as in TemplateConfig.
	MinReloadInterval time.Duration
	Splay             time.Duration
	check             *template.Template // the check command, with placeholders
}

// Template is one parsed template. It holds no execution state: renders
// of one template may run at once.
type Template struct {
	TemplateConfig
	tmpl   *template.Template // never executed itself: see bind
	denied []string           // function_denylist
	// abandoned counts the executions abandoned at render_timeout that
	// still run; while there is one, the template is not rendered.
	abandoned atomic.Int32
	// spellings are the spellings endpointsBy keeps, among names that
	// differ only in case, as of the last render that finished (see
	// spellings.go). A reload of the templates hands them on
	// (Set.Inherit).
	spellings atomic.Pointer[spellings]
	// stateRead is set once the Renderer has looked for the spellings
	// saved in its StateDir (spellstate.go).
	stateRead atomic.Bool
}

// Inherit hands on to s the names that old's templates of the same
// destination chose among spellings differing only in case, so that a
// reload of the templates does not choose them again.
func (s *Set) Inherit(old *Set) {
	if old == nil {
		return
	}
	prev := map[string]*Template{}
	for _, g := range old.Groups {
		for _, t := range g.Templates {
			prev[t.Destination] = t
		}
	}
	for _, g := range s.Groups {
		for _, t := range g.Templates {
			if o := prev[t.Destination]; o != nil {
				t.spellings.Store(o.spellings.Load())
			}
		}
	}
}

// NewSet parses every template of c (which must be normalized).
func NewSet(c Config) (*Set, error) {
	gs, err := groupsOf(c.Templates)
	if err != nil {
		return nil, err
	}
	set := &Set{Config: c}
	for _, gsets := range gs {
		g := &Group{Name: gsets.name, Check: gsets.check, CheckTimeout: gsets.checkTimeout,
			Reload: gsets.reload, ReloadTimeout: gsets.reloadTimeout, MinReloadInterval: gsets.minReloadInterval, Splay: gsets.splay}
		if gsets.reloadSignal != "" {
			if g.ReloadSignal, err = ParseSignal(gsets.reloadSignal); err != nil {
				return nil, fmt.Errorf("reload group %s: reload_signal: %w", g.Name, err)
			}
		}
		if g.Check != "" {
			g.check, err = template.New("check").Option("missingkey=error").Parse(g.Check)
			if err != nil {
				return nil, fmt.Errorf("reload group %s: check command: %w", g.Name, err)
			}
		}
		var files []*file // as a pass with every file changed checks them
		for _, i := range gsets.templates {
			t, err := parseTemplate(c.Templates[i], c.FunctionDenylist)
			if err != nil {
				return nil, err
			}
			g.Templates = append(g.Templates, t)
			files = append(files, &file{t: t, staged: stagedName(t.Destination)})
		}
		// A misspelt placeholder parses, and would fail every pass with
		// something to install: try it on the group's files now.
		if g.check != nil {
			if _, err := g.checkCommand(checkDataFor(files)); err != nil {
				return nil, fmt.Errorf("reload group %s: %w (the check command may use {{.Staged}}, {{.Destination}} and {{range .Files}}{{.Source}} {{.Destination}} {{.Staged}}{{end}})", g.Name, err)
			}
		}
		set.Groups = append(set.Groups, g)
	}
	return set, nil
}

// parseTemplate reads and parses one template. Errors name the file and
// line ("template: nginx.tmpl:3: function "x" not defined").
func parseTemplate(tc TemplateConfig, denied []string) (*Template, error) {
	if err := tc.normalizeTemplate(); err != nil { // a Set built without Normalize
		return nil, fmt.Errorf("template %s: %w", tc.Name(), err)
	}
	text := tc.Contents
	if tc.Source != "" {
		b, err := os.ReadFile(tc.Source)
		if err != nil {
			return nil, fmt.Errorf("read template: %w", err)
		}
		text = string(b)
	}
	missing := "missingkey=zero"
	if tc.ErrorOnMissingKey {
		missing = "missingkey=error"
	}
	tmpl, err := template.New(tc.Name()).Option(missing).Delims(tc.LeftDelimiter, tc.RightDelimiter).
		Funcs((&execState{}).templateFuncs(denied)).Parse(text)
	if err != nil {
		return nil, explainDenied(err, denied)
	}
	if err := checkImmutable(tmpl); err != nil {
		return nil, err
	}
	return &Template{TemplateConfig: tc, tmpl: tmpl, denied: denied}, nil
}

// Render executes the template on snap, within its render_timeout and
// max_output. It refuses (with an error) a render in which a list of
// services the template read holds fewer than MinInstances services.
func (t *Template) Render(snap *watcher.Snapshot) ([]byte, error) {
	out, _, err := t.execute(context.Background(), snap)
	return out, err
}

// checkMinInstances refuses a render in which a list of services the
// template read (watched) holds fewer than MinInstances services.
func (t *Template) checkMinInstances(watched []watchedList) error {
	if t.MinInstances > 0 {
		for _, w := range watched {
			if w.n < t.MinInstances {
				return &GuardError{Template: t.Name(), Call: w.call, Got: w.n, Min: t.MinInstances}
			}
		}
	}
	return nil
}

// GuardError is a render refused by min_instances. What becomes of the
// destination is said by whoever reports it: a pass keeps an existing
// file, and installs the render when there is none to keep.
type GuardError struct {
	Template string
	Call     string
	Got, Min int
	// spellings are those the refused render kept, which count if it is
	// installed anyway.
	spellings *spellings
}

func (e *GuardError) Error() string {
	return fmt.Sprintf("template %s: %s holds %d service(s), fewer than min_instances = %d", e.Template, e.Call, e.Got, e.Min)
}

// Len is the number of templates of the set, inline ones included.
func (s *Set) Len() int {
	n := 0
	for _, g := range s.Groups {
		n += len(g.Templates)
	}
	return n
}

// Sources returns the template files of the set (inline templates have
// none).
func (s *Set) Sources() []string {
	var out []string
	for _, g := range s.Groups {
		for _, t := range g.Templates {
			if t.Source != "" {
				out = append(out, t.Source)
			}
		}
	}
	return out
}

// Installed reports whether every template's destination has a file
// (one a previous run installed, before any pass of this one).
func (s *Set) Installed() bool {
	for _, g := range s.Groups {
		for _, t := range g.Templates {
			if fi, err := os.Stat(t.Destination); err != nil || !fi.Mode().IsRegular() {
				return false
			}
		}
	}
	return true
}

// checkData is what a check command's placeholders see.
type checkData struct {
	// Staged is the staged file of the group's first changed template.
	Staged string
	// Destination is that template's destination.
	Destination string
	// Files are every template of the group: the staged file for the
	// changed ones, the installed file for the others.
	Files []checkFile
}

type checkFile struct {
	Source, Destination, Staged string
}

// checkCommand expands the group's check command.
func (g *Group) checkCommand(d checkData) (string, error) {
	var b strings.Builder
	if err := g.check.Execute(&b, d); err != nil {
		return "", fmt.Errorf("check command of %s: %w", g.Name, err)
	}
	return b.String(), nil
}

// stagedName is the name of a staged file next to dest.
func stagedName(dest string) string { return besideName(dest, "staged") }

// besideName is the name of svcreg's file of the kind next to dest:
// hidden, and not ending in dest's extension, so that an
// "include conf.d/*" (or "*.conf") never picks it up.
func besideName(dest, kind string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".svcreg-"+kind)
}

// templatesBy is, by group name, the set of key of each of the group's
// templates.
func (s *Set) templatesBy(key func(*Template) string) map[string]map[string]bool {
	groups := make(map[string]map[string]bool, len(s.Groups))
	for _, g := range s.Groups {
		keys := make(map[string]bool, len(g.Templates))
		for _, t := range g.Templates {
			keys[key(t)] = true
		}
		groups[g.Name] = keys
	}
	return groups
}
