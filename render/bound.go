package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"

	"github.com/svcreg/svcreg/internal/registryflags"
	"github.com/svcreg/svcreg/watcher"
)

// A template is trusted (the operator writes it) but bounded: a render has
// a deadline and a most bytes it may write, and the functions that build
// large values from a small input (until, untilStep, seq, repeat, indent,
// nindent, replace, the rand functions) are capped and watch the deadline.
// Other functions are not: a template's memory is bounded by each call, not
// as a whole.
//
// text/template cannot be stopped from outside. A render runs in its own
// goroutine, writing to a writer that fails once the deadline passed or the
// limit is reached; Execute stops at its next write or at its next call of a
// capped function. A loop that neither writes nor calls one (a range over a
// range with an empty body) cannot be stopped: the render is abandoned at
// the deadline and reported, the template is not rendered again until that
// goroutine ends, and the other templates go on.

// Defaults of the bounds.
const (
	DefaultRenderTimeout = 10 * time.Second
	DefaultMaxOutput     = 16 << 20
	// maxItems caps the lists until, untilStep and seq make.
	maxItems = 1_000_000
)

// renderGuard is the part of an execution's state that bounds it and
// collects the services it refused.
type renderGuard struct {
	ctx           context.Context
	maxOutput     int
	failOnRefused bool
	// addrs lets an address be a host name (allow_hostnames) or a
	// loopback one (allow_loopback).
	addrs addrRules
	// denied are the functions function_denylist names, which configAs
	// and metaAs do not call by name either.
	denied  []string
	refused []Refusal
}

func (g *renderGuard) alive(fn string) error {
	if err := g.ctx.Err(); err != nil {
		return fmt.Errorf("%s: render stopped: %w", fn, context.Cause(g.ctx))
	}
	return nil
}

// errRenderTimeout and errMaxOutput are the causes of a stopped render.
var (
	errRenderTimeout = errors.New("render_timeout reached")
	errMaxOutput     = errors.New("max_output reached")
)

// limitedBuffer is a render's output: it fails a write once the render's
// context is done or the output would exceed max bytes.
type limitedBuffer struct {
	ctx context.Context
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, context.Cause(b.ctx)
	}
	if b.buf.Len()+len(p) > b.max {
		return 0, fmt.Errorf("%w: the output is larger than %d bytes", errMaxOutput, b.max)
	}
	return b.buf.Write(p)
}

// guardedFuncs replaces sprig's functions that can build arbitrarily large
// values or read the renderer's credentials. until, untilStep and seq are
// reimplemented with sprig's results: sprig's count with int arithmetic
// that overflows (untilStep near the int limits never ends).
func (g *renderGuard) guardedFuncs() map[string]any {
	fm := map[string]any{
		"until": func(n int) ([]int, error) {
			step := 1
			if n < 0 {
				step = -1
			}
			return g.untilStep("until", 0, n, step)
		},
		"untilStep": func(start, stop, step int) ([]int, error) {
			return g.untilStep("untilStep", start, stop, step)
		},
		"seq": g.seq,
		"repeat": func(count int, s string) (string, error) {
			if err := g.size("repeat", count, len(s)); err != nil {
				return "", err
			}
			return strings.Repeat(s, count), nil
		},
		"indent": func(spaces int, s string) (string, error) {
			if err := g.size("indent", spaces, strings.Count(s, "\n")+1); err != nil {
				return "", err
			}
			pad := strings.Repeat(" ", spaces)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad), nil
		},
		"nindent": func(spaces int, s string) (string, error) {
			if err := g.size("nindent", spaces, strings.Count(s, "\n")+1); err != nil {
				return "", err
			}
			pad := strings.Repeat(" ", spaces)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad), nil
		},
		"replace": func(old, new, s string) (string, error) {
			if err := g.alive("replace"); err != nil {
				return "", err
			}
			if grow := len(new) - len(old); grow > 0 {
				n := strings.Count(s, old) // utf8.RuneCountInString(s)+1 for ""
				if n > 0 && (len(s) > g.maxOutput || n > (g.maxOutput-len(s))/grow) {
					return "", fmt.Errorf("replace: the result would be larger than max_output (%d bytes)", g.maxOutput)
				}
			}
			return sprigReplace(old, new, s), nil
		},
		"randBytes": func(count int) (string, error) {
			// base64: 4 bytes for every 3
			if err := g.size("randBytes", count, 1); err != nil {
				return "", err
			}
			if err := g.size("randBytes", count/3+1, 4); err != nil {
				return "", err
			}
			return sprigRandBytes(count)
		},
		"env":       templateEnv,
		"expandenv": func(s string) string { return os.Expand(s, templateEnv) },
	}
	for name, rand := range sprigRand {
		fm[name] = func(count int) (string, error) {
			if err := g.size(name, count, 1); err != nil {
				return "", err
			}
			return rand(count), nil
		}
	}
	return fm
}

// The sprig functions guardedFuncs wraps, looked up once: sprig builds its
// whole map on every call, and an execution binds its guard afresh.
var (
	sprigReplace   = sprig.TxtFuncMap()["replace"].(func(string, string, string) string)
	sprigRandBytes = sprig.TxtFuncMap()["randBytes"].(func(int) (string, error))
	sprigRand      = func() map[string]func(int) string {
		m := map[string]func(int) string{}
		for _, name := range []string{"randAlphaNum", "randAlpha", "randAscii", "randNumeric"} {
			m[name] = sprig.TxtFuncMap()[name].(func(int) string)
		}
		return m
	}()
)

// untilStep is sprig's untilStep (start, start+step, ... short of stop) of
// at most maxItems items, counted without overflow.
func (g *renderGuard) untilStep(fn string, start, stop, step int) ([]int, error) {
	if err := g.alive(fn); err != nil {
		return nil, err
	}
	var span, stride uint64 // distance to stop and step, both positive
	switch {
	case step > 0 && start < stop:
		span, stride = uint64(stop)-uint64(start)-1, uint64(step)
	case step < 0 && start > stop:
		span, stride = uint64(start)-uint64(stop)-1, -uint64(step)
	default:
		return []int{}, nil
	}
	return g.steps(fn, start, step, span/stride)
}

// seq is sprig's seq: seq END counts from 1, seq START END, seq START STEP
// END; END is included when a step reaches it.
func (g *renderGuard) seq(args ...int) (string, error) {
	if err := g.alive("seq"); err != nil {
		return "", err
	}
	var start, end, step int
	switch len(args) {
	case 1:
		start, end = 1, args[0]
	case 2:
		start, end = args[0], args[1]
	case 3:
		start, step, end = args[0], args[1], args[2]
	default:
		return "", nil
	}
	if len(args) < 3 {
		step = 1
		if end < start {
			step = -1
		}
	}
	var span, stride uint64
	switch {
	case step > 0 && end >= start:
		span, stride = uint64(end)-uint64(start), uint64(step)
	case step < 0 && end < start:
		span, stride = uint64(start)-uint64(end), -uint64(step)
	default:
		return "", nil
	}
	list, err := g.steps("seq", start, step, span/stride)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, v := range list {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(v))
	}
	return b.String(), nil
}

// steps is start, start+step, ... : last+1 items, refused beyond maxItems.
func (g *renderGuard) steps(fn string, start, step int, last uint64) ([]int, error) {
	if last >= maxItems {
		return nil, fmt.Errorf("%s: more than %d items", fn, maxItems)
	}
	out := make([]int, last+1)
	for i := range out {
		out[i] = start + i*step
	}
	return out, nil
}

// size checks that count copies of n bytes fit in max_output.
func (g *renderGuard) size(fn string, count, n int) error {
	if err := g.alive(fn); err != nil {
		return err
	}
	if count < 0 {
		return fmt.Errorf("%s: negative count %d", fn, count)
	}
	if n > 0 && count > g.maxOutput/n {
		return fmt.Errorf("%s: the result would be larger than max_output (%d bytes)", fn, g.maxOutput)
	}
	return nil
}

// templateEnv is a template's env: the renderer's environment without its
// credentials (registryflags.ShownEnv).
func templateEnv(name string) string {
	v, _ := registryflags.ShownEnv(name, os.Getenv(name))
	return v
}

// execute runs the template on snap within the template's bounds, in its
// own goroutine; it returns the output and the services refused. Each
// execution runs a clone of the parsed template whose functions are bound
// to a state of its own.
func (t *Template) execute(ctx context.Context, snap *watcher.Snapshot) ([]byte, []Refusal, error) {
	if t.abandoned.Load() > 0 {
		return nil, nil, fmt.Errorf("template %s: an earlier render that passed render_timeout is still running; it is not rendered again until that one ends (reload the templates after fixing it)", t.Name())
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil) // an abandoned render's next write fails
	st := &execState{snap: snap, renderGuard: renderGuard{ctx: ctx, maxOutput: int(t.MaxOutput),
		failOnRefused: t.OnRefused == RefusedFail, addrs: addrRules{hostnames: t.AllowHostnames, loopback: t.AllowLoopback, local: hostAddrs.current()}, denied: t.denied}}
	st.now = time.Now()
	if p := t.spellings.Load(); p != nil {
		st.prevSpellings = *p
	}
	tmpl, err := t.bind(st)
	if err != nil {
		return nil, nil, err
	}
	timeout := time.AfterFunc(t.RenderTimeout.D(), func() { cancel(errRenderTimeout) })
	type result struct {
		out     []byte
		refused []Refusal
		err     error
	}
	done := make(chan result, 1)
	var state atomic.Int32 // running, finished or abandoned
	const (
		running = iota
		finished
		abandoned
	)
	go func() {
		buf := &limitedBuffer{ctx: ctx, max: int(t.MaxOutput)}
		err := explainExec(tmpl.Execute(buf, snap))
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("template %s: %w (%v)", t.Name(), context.Cause(ctx), err)
		}
		if err == nil {
			err = t.checkMinInstances(st.allWatched())
		}
		var guard *GuardError
		if !state.CompareAndSwap(running, finished) {
			t.abandoned.Add(-1) // before the result, so the next render finds none
		} else if err == nil {
			next := st.spellings.merged(st.prevSpellings, st.now)
			t.spellings.Store(&next)
		} else if errors.As(err, &guard) {
			// A render min_instances refused is installed where there
			// is no file to keep (a first deploy): its choices count
			// then, and only then (renderGroup).
			next := st.spellings.merged(st.prevSpellings, st.now)
			guard.spellings = &next
		}
		done <- result{buf.buf.Bytes(), dedupeRefusals(st.refused, t.Name()), err}
	}()
	select {
	case res := <-done:
		timeout.Stop()
		return res.out, res.refused, res.err
	case <-ctx.Done():
		timeout.Stop()
	}
	// Stopped: an execution that writes or calls a bounded function ends
	// at once; give it a moment, so that only one that does neither is
	// reported abandoned.
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case res := <-done: // stopped, or finished just in time
		return res.out, res.refused, res.err
	case <-grace.C:
	}
	t.abandoned.Add(1)
	if !state.CompareAndSwap(running, abandoned) { // it finished meanwhile
		t.abandoned.Add(-1)
		res := <-done
		return res.out, res.refused, res.err
	}
	if cause := context.Cause(ctx); errors.Is(cause, errRenderTimeout) {
		return nil, nil, fmt.Errorf("template %s: %w after %s; the render was abandoned and uses a CPU until its loop ends", t.Name(), cause, t.RenderTimeout.D())
	}
	return nil, nil, fmt.Errorf("template %s: render stopped: %w", t.Name(), context.Cause(ctx))
}

// bind returns a clone of the parsed template whose functions read st.
func (t *Template) bind(st *execState) (*template.Template, error) {
	tmpl, err := t.tmpl.Clone()
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Name(), err)
	}
	fm := st.boundFuncs()
	for _, name := range t.denied {
		delete(fm, name)
	}
	return tmpl.Funcs(fm), nil
}

// stopGrace is how long a stopped render has to end before it is
// abandoned.
const stopGrace = 100 * time.Millisecond

// dedupeRefusals names the template in each refusal and drops repeats (a
// template may read a service twice).
func dedupeRefusals(list []Refusal, template string) []Refusal {
	var out []Refusal
	seen := map[Refusal]bool{}
	for _, r := range list {
		r.Template = template
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	// Configuration values first: a template reads a few, and a hundred
	// refused services would push them out of the log and /healthz.
	slices.SortStableFunc(out, func(a, b Refusal) int {
		switch {
		case a.OfConfiguration() == b.OfConfiguration():
			return 0
		case a.OfConfiguration():
			return -1
		}
		return 1
	})
	return out
}

// templateFuncs is every function a template may call: the snapshot
// functions, sprig's (the unbounded ones and env replaced), the safe
// functions, less the ones the configuration's function_denylist names.
func (st *execState) templateFuncs(denied []string) map[string]any {
	fm := statelessFuncs()
	maps.Copy(fm, st.boundFuncs())
	for _, name := range denied {
		delete(fm, name)
	}
	return fm
}

// boundFuncs are the functions that read an execution's state: a template
// is parsed with them bound to an empty state, and each execution binds
// them to its own.
func (st *execState) boundFuncs() map[string]any {
	fm := st.snapshotFuncs()
	maps.Copy(fm, st.renderGuard.guardedFuncs())
	maps.Copy(fm, st.safeFuncs())
	return fm
}

// explainDenied adds to text/template's "function "env" not defined" that
// the function is in function_denylist.
func explainDenied(err error, denied []string) error {
	for _, name := range denied {
		if strings.Contains(err.Error(), fmt.Sprintf("function %q not defined", name)) {
			return fmt.Errorf("%w (it is in function_denylist)", err)
		}
	}
	return err
}

// checkDenylist refuses a function_denylist entry that names no function.
func checkDenylist(denied []string) error {
	fm := (&execState{}).templateFuncs(nil)
	for _, name := range denied {
		if _, ok := fm[name]; !ok {
			return fmt.Errorf("function_denylist: %q is not a template function", name)
		}
	}
	return nil
}

// explainExec adds to a template's error about a field it cannot find
// what the data there is: text/template names the Go type, which a
// template's author does not know.
func explainExec(err error) error {
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "in type *watcher.Snapshot"):
		return fmt.Errorf("%w (\".\" is the registry's snapshot, read through the template functions: services, servicesWithTag, config, …; see the README)", err)
	case strings.Contains(err.Error(), "in type registry.Service"):
		return fmt.Errorf("%w (a service has .ID, .Tags, .Metadata, .HeartbeatTimeout and .LastSeen)", err)
	}
	return err
}
