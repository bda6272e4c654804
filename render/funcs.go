package render

import (
	"cmp"
	"fmt"
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
	// prevSpellings are the spellings endpointsBy kept in the template's
	// last render (read only), spellings those of this one; now the
	// render's start.
	prevSpellings, spellings spellings
	now                      time.Time
	// values are the value functions configAs and metaAs call, made at
	// the first call.
	values map[string]any
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
		"config":          st.config,
		"configOr":        st.configOr,
		"configNamespace": st.configNamespace,
	}
}

// statelessFuncs are sprig's functions and the snapshot functions that
// read no state.
func statelessFuncs() template.FuncMap {
	fm := sprig.TxtFuncMap()
	fm["sortByMeta"] = sortByMeta
	fm["groupByMeta"] = groupByMeta
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
	return st.watch(fmt.Sprintf("whereMeta %q %q", key, value), out)
}

// sortByMeta sorts services by a metadata value (missing sorts first), then
// by id; numbers compare as numbers when both values are integers.
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

func compareMeta(a, b string) int {
	x, errx := strconv.ParseInt(a, 10, 64)
	y, erry := strconv.ParseInt(b, 10, 64)
	if errx == nil && erry == nil {
		return cmp.Compare(x, y)
	}
	return strings.Compare(a, b)
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
	svc, err := serviceOf("meta", s, false)
	if svc == nil || err != nil {
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
