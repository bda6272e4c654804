package render

import (
	"slices"
	"time"
)

// Names that differ only in case are one name to nginx (endpointsBy keeps
// one spelling of each and refuses the services of the others). Which one
// a template kept is remembered from render to render, so that a service
// registered later with another spelling cannot take the name, and its
// traffic, from the services already behind it.

// spellingGrace is how long a remembered spelling may have no good
// service before the spelling served meanwhile is remembered instead: a
// rolling restart of every instance of a backend takes less, a rename for
// good more.
const spellingGrace = 10 * time.Minute

// maxSpellings bounds the names remembered that the last render did not
// see (names come from registry data). The names a render saw are all
// kept: they are the snapshot's, which bounds them.
const maxSpellings = 4096

// spelling is a remembered spelling of a name; absent, if not zero, when
// a render first found no good service with it; seen when a render last
// found the name at all; since when renders started serving this
// spelling, without a gap of spellingGrace (in a state file written
// before it was kept, taken as seen); rival once a render found a good
// service with another spelling of it.
type spelling struct {
	name                string
	absent, seen, since time.Time
	rival               bool
}

// spellings are a template's remembered spellings, by spellingKey; a map
// stored is never changed.
type spellings map[string]spelling

// spellingKey is the key of a name: the metadata key and the name in
// lowercase.
func spellingKey(key, folded string) string { return key + "\x00" + folded }

// remembered is the spelling to keep for the name k, if a good service
// has it.
func (s spellings) remembered(k string) string { return s[k].name }

// choose records that a call of endpointsBy served the name k as served
// (its good services' spellings are present): the remembered spelling
// stays while it is served, or, not served, for spellingGrace after a
// render first found it so; a name without one gets served. A template
// may call endpointsBy on several lists: the remembered spelling served
// by any call of the render counts as served.
func (next spellings) choose(prev spellings, k, served string, now time.Time) {
	p, ok := prev[k]
	if cur, seen := next[k]; seen && cur.absent.IsZero() && (!ok || cur.name == p.name) {
		return // the remembered spelling (or, none, the first) served by an earlier call
	}
	switch {
	case !ok:
		next[k] = spelling{name: served, seen: now, since: now}
	case p.name == served:
		since := p.since
		if now.Sub(p.seen) >= spellingGrace {
			since = now // back after the grace: served anew, not all along
		}
		next[k] = spelling{name: served, seen: now, since: since, rival: p.rival}
	case p.absent.IsZero():
		next[k] = spelling{name: p.name, absent: now, seen: now, since: p.since, rival: true}
	case now.Sub(p.absent) >= spellingGrace:
		next[k] = spelling{name: served, seen: now, since: now, rival: true}
	default:
		next[k] = spelling{name: p.name, absent: p.absent, seen: now, since: p.since, rival: true}
	}
}

// contest records that a call of endpointsBy found good services with two
// spellings of the name k, after it chose.
func (next spellings) contest(k string) {
	sp := next[k]
	sp.rival = true
	next[k] = sp
}

// merged is next and, up to maxSpellings of them, the names of prev that
// this render did not see: first those seen within spellingGrace (a
// backend whose services are all restarting), those served since the
// earliest first, then the others, seen last first. Names come and go
// with registry data: the names a render sees have no say in which are
// dropped (they would push out the spelling of a backend whose services
// restart), nor names served since later than the backend (registered
// after it, however long kept or shown again since), and names long gone
// age out whatever their past.
func (next spellings) merged(prev spellings, now time.Time) spellings {
	if next == nil {
		next = spellings{}
	}
	var unseen []string
	for k := range prev {
		if _, ok := next[k]; !ok {
			unseen = append(unseen, k)
		}
	}
	if len(unseen) > maxSpellings {
		recent := func(sp spelling) bool { return now.Sub(sp.seen) < spellingGrace }
		slices.SortFunc(unseen, func(a, b string) int {
			x, y := prev[a], prev[b]
			switch rx, ry := recent(x), recent(y); {
			case rx != ry:
				if rx {
					return -1
				}
				return 1
			case rx:
				if c := x.since.Compare(y.since); c != 0 {
					return c
				}
			}
			return y.seen.Compare(x.seen)
		})
		unseen = unseen[:maxSpellings]
	}
	for _, k := range unseen {
		next[k] = prev[k]
	}
	return next
}
