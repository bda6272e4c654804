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
// good more. A name seen within it is kept remembered whatever else comes
// (merged), and one seen again after it is served anew (choose).
const spellingGrace = 10 * time.Minute

// maxSpellings bounds the names remembered that renders have not seen
// within spellingGrace (names come from registry data). The names a
// render saw are all kept: they are the snapshot's, which bounds them.
// So are those seen within spellingGrace, up to maxRecentSpellings: a
// backend whose services all restart is one of them, and a flood of
// other names (as many as the registry took writes in the grace) must
// not push it out.
const (
	maxSpellings       = 4096
	maxRecentSpellings = 1 << 16
)

// spelling is a remembered spelling of a name; absent, if not zero, when
// a render first found no good service with it; seen when a render last
// found the name at all; since when renders started finding the name,
// remembered in this spelling, without a gap of spellingGrace between
// them (in a state file written before it was kept, taken as seen); rival
// once a render found a good service with another spelling of it.
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
	since := p.since
	if now.Sub(p.seen) >= spellingGrace {
		since = now // back after the grace, in any spelling: served anew, not all along
	}
	switch {
	case !ok:
		next[k] = spelling{name: served, seen: now, since: now}
	case p.name == served:
		next[k] = spelling{name: served, seen: now, since: since, rival: p.rival}
	case p.absent.IsZero():
		next[k] = spelling{name: p.name, absent: now, seen: now, since: since, rival: true}
	case now.Sub(p.absent) >= spellingGrace:
		next[k] = spelling{name: served, seen: now, since: now, rival: true}
	default:
		next[k] = spelling{name: p.name, absent: p.absent, seen: now, since: since, rival: true}
	}
}

// contest records that a call of endpointsBy found good services with two
// spellings of the name k, after it chose.
func (next spellings) contest(k string) {
	sp := next[k]
	sp.rival = true
	next[k] = sp
}

// merged is next and the names of prev that this render did not see: all
// those seen within spellingGrace (a backend whose services are all
// restarting), up to maxRecentSpellings, those served since the earliest
// first; and up to maxSpellings of the others, those seen last first.
// Names come and go with registry data: the names a render sees, and
// those it saw lately, have no say in which are dropped, and names long
// gone age out whatever their past.
func (next spellings) merged(prev spellings, now time.Time) spellings {
	if next == nil {
		next = spellings{}
	}
	var recent, old []string
	for k, sp := range prev {
		switch _, ok := next[k]; {
		case ok:
		case now.Sub(sp.seen) < spellingGrace:
			recent = append(recent, k)
		default:
			old = append(old, k)
		}
	}
	lastSeen := func(a, b string) int { return prev[b].seen.Compare(prev[a].seen) }
	if len(recent) > maxRecentSpellings {
		slices.SortFunc(recent, func(a, b string) int {
			if c := prev[a].since.Compare(prev[b].since); c != 0 {
				return c
			}
			return lastSeen(a, b)
		})
		recent = recent[:maxRecentSpellings]
	}
	if len(old) > maxSpellings {
		slices.SortFunc(old, lastSeen)
		old = old[:maxSpellings]
	}
	for _, ks := range [][]string{recent, old} {
		for _, k := range ks {
			next[k] = prev[k]
		}
	}
	return next
}
