package render

import (
	"cmp"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"

	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/watcher"
)

// execState is what a template's functions see during one execution: the
// snapshot, the bounds, the services refused and the sizes of the service
// lists read (for min_instances). Each execution has its own, so a
// Template holds no state and renders on several snapshots at once.
type execState struct {
	renderGuard
	snap    *watcher.Snapshot
	watched []watchedList
	// parts are the lists groupByMeta made (and those made of them), by
	// listID; groupings the calls made of them.
	parts     map[*registry.Service]*grouping
	groupings []watchedGroup
	// prevSpellings are the spellings endpointsBy kept in the template's
	// last render (read only), spellings those of this one; now the
	// render's start.
	prevSpellings, spellings spellings
	now                      time.Time
	// values are the value functions configAs and metaAs call, made at
	// the first call; checkers those calls made of them.
	values   map[string]any
	checkers map[checkerKey]boundChecker
}

// watchedList is a service list a template read, by the call that made it.
type watchedList struct {
	call string
	n    int
}

func (st *execState) watch(call string, list []registry.Service) []registry.Service {
	st.watched = append(st.watched, watchedList{call, len(list)})
	return list
}

// The lists groupByMeta makes are parts of one grouping: min_instances
// counts the lists made from them (endpoints, endpointsBy,
// endpointsByExact, whereMeta) as one for each call, their total. A list
// of each would let one service with a value of its own (a new backend of
// one service, refused) hold the whole render back. A part is known by
// its first element's address (listID), also when empty: the lists made
// of a part have room for one. sortByMeta and whereMeta keep a part's
// lists parts, groupByMeta of a part makes parts of the same grouping; a
// list the template cuts past its first service is a list of its own.

// grouping is the lists of a groupByMeta call.
type grouping struct {
	call string // groupByMeta "KEY"
	// kept are, by the call made of its parts, the services the calls
	// kept: their total counts each once, so that
	// parts read twice ({{if endpoints $s}}, then {{range endpoints $s}})
	// or overlapping (a part and a whereMeta of it) do not add up to more
	// services than there are.
	kept map[string]map[string]bool
}

// listID is what tells a list apart: the address of its first element,
// of an empty list's too if it has room for one; nil for a list without
// room.
func listID(list []registry.Service) *registry.Service {
	if cap(list) == 0 {
		return nil
	}
	return &list[:1][0]
}

// partOf returns the grouping list is a part of, or nil.
func (st *execState) partOf(list []registry.Service) *grouping {
	if id := listID(list); id != nil {
		return st.parts[id]
	}
	return nil
}

// markPart makes list a part of g (nil: of none), and returns it: with
// room for one element if it had none, so that it is known empty too.
func (st *execState) markPart(list []registry.Service, g *grouping) []registry.Service {
	if g == nil {
		return list
	}
	if cap(list) == 0 {
		list = make([]registry.Service, 0, 1)
	}
	if st.parts == nil {
		st.parts = map[*registry.Service]*grouping{}
	}
	st.parts[listID(list)] = g
	return list
}

// watchFrom records the list call made of from, n services: as a list of
// its own, or, from being a part of a grouping, in the grouping's total
// for call, the services whose ids kept gives (read only then).
func (st *execState) watchFrom(from []registry.Service, call string, n int, kept iter.Seq[string]) {
	g := st.partOf(from)
	if g == nil {
		st.watched = append(st.watched, watchedList{call, n})
		return
	}
	ids := g.kept[call]
	if ids == nil {
		ids = map[string]bool{}
		g.kept[call] = ids
		st.groupings = append(st.groupings, watchedGroup{g, call})
	}
	for id := range kept {
		ids[id] = true
	}
}

// idsOf gives the ids of the services of list's elements, id telling an
// element's.
func idsOf[T any](id func(T) string, list []T) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, e := range list {
			if !yield(id(e)) {
				return
			}
		}
	}
}

func serviceID(s registry.Service) string { return s.ID }

// watchedGroup is a call made of a grouping's parts, in the order first
// made.
type watchedGroup struct {
	g    *grouping
	call string
}

// allWatched is every list the render read, the groupings' totals last.
func (st *execState) allWatched() []watchedList {
	out := slices.Clone(st.watched)
	for _, w := range st.groupings {
		out = append(out, watchedList{fmt.Sprintf("%s of the lists of %s", w.call, w.g.call), len(w.g.kept[w.call])})
	}
	return out
}

// The snapshot functions' names are part of the user interface (design
// "Template data and functions"): snapshotFuncs are those that read the
// execution's state, statelessFuncs the others, with sprig's.

// snapshotFuncs are the snapshot functions that read st.
func (st *execState) snapshotFuncs() map[string]any {
	return map[string]any{
		"services":        st.services,
		"servicesWithTag": st.servicesWithTag,
		"service":         st.service,
		"whereMeta":       st.whereMeta,
		"sortByMeta":      st.sortByMeta,
		"groupByMeta":     st.groupByMeta,
		"config":          st.config,
		"configOr":        st.configOr,
		"configNamespace": st.configNamespace,
	}
}

// statelessFuncs are sprig's functions and the snapshot functions that
// read no state.
func statelessFuncs() template.FuncMap {
	fm := sprig.TxtFuncMap()
	fm["meta"] = meta
	fm["sortAlpha"] = sortAlpha
	return fm
}

// sortAlpha is sprig's sortAlpha on a copy. Sprig's sorts a []string in
// place, and a service's Tags are the snapshot's own, shared by every
// template and read by the watcher. It is the only sprig function (v3.3.0)
// that writes to its argument: set, unset, merge, mergeOverwrite and the
// other dict functions take a map[string]interface{}, which a service's
// Metadata (a map[string]string) is not, and the list functions (append,
// prepend, reverse, slice, …) build new lists.
func sortAlpha(list any) []string {
	if l, ok := list.([]string); ok {
		list = slices.Clone(l)
	}
	return sprigSortAlpha(list)
}

var sprigSortAlpha = sprig.TxtFuncMap()["sortAlpha"].(func(any) []string)

// services returns every live service, sorted by id.
func (st *execState) services() []registry.Service {
	return st.watch("services", st.snap.Services())
}

// servicesWithTag returns the services carrying tag, sorted by id. The
// snapshot builds each tag's list once, for every template of a pass.
func (st *execState) servicesWithTag(tag string) []registry.Service {
	return st.watch(fmt.Sprintf("servicesWithTag %q", tag), st.snap.ServicesWithTag(tag))
}

// service returns one service, or nil.
func (st *execState) service(id string) *registry.Service {
	s, ok := st.snap.Service(id)
	if !ok {
		return nil
	}
	return &s
}

// whereMeta keeps the services whose metadata key equals value.
func (st *execState) whereMeta(key, value string, list []registry.Service) []registry.Service {
	var out []registry.Service
	for _, s := range list {
		if v, ok := s.Metadata[key]; ok && v == value {
			out = append(out, s)
		}
	}
	st.watchFrom(list, fmt.Sprintf("whereMeta %q %q", key, value), len(out), idsOf(serviceID, out))
	return st.markPart(out, st.partOf(list))
}

// sortByMeta is the stateless sortByMeta; a part of a grouping stays a
// part once sorted.
func (st *execState) sortByMeta(key string, list []registry.Service) []registry.Service {
	return st.markPart(sortByMeta(key, list), st.partOf(list))
}

// sortByMeta sorts services by a metadata value (compareMeta: missing
// first, then integers as numbers, then the others), then by id.
func sortByMeta(key string, list []registry.Service) []registry.Service {
	out := slices.Clone(list)
	slices.SortStableFunc(out, func(a, b registry.Service) int {
		if c := compareMeta(a.Metadata[key], b.Metadata[key]); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// compareMeta orders metadata values: missing (empty) first, then
// integers as numbers, then the others as strings. A total order: a
// service's value cannot make a sort of the others come out differently
// (9 < 10 and "10" < "1a" < "9" compared pairwise would loop).
func compareMeta(a, b string) int {
	rank := func(v string) (int, int64) {
		if v == "" {
			return 0, 0
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return 1, n
		}
		return 2, 0
	}
	ra, x := rank(a)
	rb, y := rank(b)
	if c := cmp.Compare(ra, rb); c != 0 {
		return c
	}
	if ra == 1 {
		return cmp.Compare(x, y)
	}
	return strings.Compare(a, b)
}

// groupByMeta is groupByMeta's lists, made parts of one grouping: a new
// one, or, grouping a part, the part's (groups of groups count as one).
func (st *execState) groupByMeta(key string, list []registry.Service) map[string][]registry.Service {
	out := groupByMeta(key, list)
	g := st.partOf(list)
	if g == nil {
		g = &grouping{call: fmt.Sprintf("groupByMeta %q", key), kept: map[string]map[string]bool{}}
	}
	for _, part := range out {
		st.markPart(part, g)
	}
	return out
}

// groupByMeta maps each value of a metadata key to the services carrying
// it, in the list's order; services without the key are left out.
func groupByMeta(key string, list []registry.Service) map[string][]registry.Service {
	out := map[string][]registry.Service{}
	for _, s := range list {
		if v, ok := s.Metadata[key]; ok {
			out[v] = append(out[v], s)
		}
	}
	return out
}

// meta returns a service's metadata value, or def when it has none.
func meta(s any, key, def string) (string, error) {
	svc, ok, err := serviceOf("meta", s, false)
	if !ok {
		return def, err
	}
	if v, ok := svc.Metadata[key]; ok {
		return v, nil
	}
	return def, nil
}

// config returns a configuration value; a missing one is an error, so a
// template never renders an empty value by mistake.
func (st *execState) config(id string) (string, error) {
	v, ok := st.snap.Config(id)
	if !ok {
		return "", fmt.Errorf("configuration value %q does not exist (use configOr to give a default)", id)
	}
	return v, nil
}

// configOr returns a configuration value, or def when it does not exist.
func (st *execState) configOr(id, def string) string {
	if v, ok := st.snap.Config(id); ok {
		return v
	}
	return def
}

// configNamespace returns the values under a namespace ("/production" or
// "/production/"), sorted by id. Their ids are full ids.
func (st *execState) configNamespace(ns string) []registry.ConfigValue {
	if !strings.HasPrefix(ns, "/") {
		ns = "/" + ns
	}
	if !strings.HasSuffix(ns, "/") {
		ns += "/"
	}
	return st.snap.ConfigValues(ns)
}
