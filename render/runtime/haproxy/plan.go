package haproxy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/svcreg/svcreg/render/runtime"
)

// Plan compares the installed file with the new one. The change can be
// applied at runtime when both have the same sections with the same lines
// apart from server lines, and every server line that is new or changed
// differs from the old one at most in address, port, weight and the
// disabled keyword, and uses only keywords "add server" accepts.
func (a *Adapter) Plan(installed, rendered []byte) (runtime.Plan, error) {
	old, cur := parseConfig(installed), parseConfig(rendered)
	if len(old.sections) != len(cur.sections) {
		return nil, runtime.Reloadf("sections were added or removed (%d before, %d now)", len(old.sections)-1, len(cur.sections)-1)
	}
	changed := 0
	for i, s := range cur.sections {
		o := old.sections[i]
		if o.header != s.header {
			return nil, runtime.Reloadf("section %q became %q", o.header, s.header)
		}
		if !slices.Equal(o.lines, s.lines) {
			return nil, runtime.Reloadf("section %q changed apart from its server lines", s.header)
		}
		if sameServers(o, s) {
			continue
		}
		changed++
		if s.unsupported != "" {
			return nil, runtime.Reloadf("the servers of %q changed, and %s", s.header, s.unsupported)
		}
		for _, sv := range s.servers {
			ov := o.server(sv.name)
			if ov != nil && serverEqual(ov, sv) {
				continue
			}
			if sv.unsupported != "" {
				return nil, runtime.Reloadf("server %s/%s: %s", s.name, sv.name, sv.unsupported)
			}
			if ov != nil && ov.unsupported != "" {
				// Its settings are unknown: the new line may drop one
				// (backup, send-proxy, ssl) that the live server keeps.
				return nil, runtime.Reloadf("server %s/%s changed, and its installed line cannot be read: %s", s.name, sv.name, ov.unsupported)
			}
			if ov != nil && !sameOptions(ov, sv) {
				return nil, runtime.Reloadf("server %s/%s: settings other than address, port, weight and disabled changed", s.name, sv.name)
			}
			if ov != nil && sv.agent && ov.weight != sv.weight {
				return nil, runtime.Reloadf("server %s/%s: its weight changed, and its agent-check's answers set shares of the weight it was loaded with", s.name, sv.name)
			}
		}
		if dup := duplicateName(s); dup != "" {
			return nil, runtime.Reloadf("server %s/%s appears twice", s.name, dup)
		}
	}
	if changed == 0 {
		return nil, runtime.Reloadf("nothing but comments or spacing changed")
	}
	return &plan{a: a, old: old, cur: cur}, nil
}

type plan struct {
	a        *Adapter
	old, cur *config
}

// backends returns the sections of the new file that hold servers, with
// the same section of the installed file.
func (p *plan) backends() (cur, old []*section) {
	for i, s := range p.cur.sections {
		if runtimeBackend(s) {
			cur = append(cur, s)
			old = append(old, p.old.sections[i])
		}
	}
	return cur, old
}

// runtimeBackend says whether s is a section whose servers the adapter
// changes: a backend or listen section that is not unsupported. The
// others are left as they are live (Plan refuses a change to them): a
// server-template's servers, say, are live but not in the file.
func runtimeBackend(s *section) bool {
	return (s.kind == "backend" || s.kind == "listen") && s.unsupported == ""
}

// Commands returns what Apply would send if the live state were the
// installed file, and what the drains do after it.
func (p *plan) Commands() []string {
	cur, old := p.backends()
	lives := make([]map[string]liveServer, len(old))
	for i, s := range old {
		lives[i] = liveFromFile(s)
	}
	sc, err := script(cur, knownIn(p.old), lives, nil)
	if err != nil {
		return []string{"# " + err.Error()}
	}
	return sc.commands(p.a.drainTimeout)
}

// knownIn returns what the files say of a server. Apply knows what the
// installed file says (what is live was loaded from it or applied to
// match it); Revert also what the new file says, which Apply went ahead
// of. A server in both has the same settings (Plan checked).
func knownIn(files ...*config) knownFunc {
	return func(backend, name string) *server {
		for _, c := range files {
			if s := c.backend(backend); s != nil {
				if sv := s.server(name); sv != nil {
					return sv
				}
			}
		}
		return nil
	}
}

// drain is a server ("backend/server") in drain state, and what is done
// once no sessions are left on it (or at the drain timeout, after cutting
// them): commands, then, with del, "del server"; then next, a stand-in to
// drain in turn.
type drain struct {
	id     string
	server *server // its line, for a restore
	then   []string
	del    bool
	next   *drain
	// set when the drain is under way
	deadline time.Time // of the wait for sessions
	deleting time.Time // when set: the deletion is being retried until then
}

// backend is the name of d's server's backend.
func (d *drain) backend() string {
	b, _, _ := strings.Cut(d.id, "/")
	return b
}

// describe says what d does, for --dry.
func (d *drain) describe(timeout time.Duration) []string {
	var out []string
	for ; d != nil; d = d.next {
		then := slices.Clone(d.then)
		if d.del {
			then = append(then, "del server "+d.id)
		}
		out = append(out, fmt.Sprintf("# in the background, once no sessions are left on %s (at most %s): %s", d.id, timeout, strings.Join(then, "; ")))
		if d.next != nil {
			out = append(out, "# then: set server "+d.next.id+" state drain")
		}
	}
	return out
}

// commands are sc's commands, then its drains described (drain.describe,
// each at most timeout): what an apply of it sends.
func (sc scriptOut) commands(timeout time.Duration) []string {
	out := slices.Clip(sc.cmds) // appended to: sc keeps its own
	for _, d := range sc.drains {
		out = append(out, d.describe(timeout)...)
	}
	return out
}

// knownFunc says what a file says of a live server, or nil.
type knownFunc func(backend, name string) *server

// scriptOut is what takes the backends to the file's: commands to send
// now, drains to start (their servers are put in drain state by cmds) and
// drains under way that the change ends (their servers are back in the
// file).
type scriptOut struct {
	cmds   []string
	drains []*drain
	cancel []string
}

// script is what takes the backends from their live state to the file's:
//
//  1. servers added and settings changed, so new capacity is there before
//     old capacity goes; a server that moves to another address gets a
//     stand-in at the new address;
//  2. the servers that leave or move are put in drain state: no new
//     requests;
//  3. in the background, once their requests are done, the moved servers
//     get their new address (which closes their idle connections: with
//     none in use, none to the old address is left) and take requests
//     again, and their stand-ins are drained and deleted; the servers that
//     leave are deleted.
//
// Changing the address of a server in use would be quicker, but
// connections busy at that moment go back to the server's idle pool
// afterwards and carry later requests to the old address. pending are the
// drains under way, by id: a server drained or deleted in the background
// that the file has again is restored, and the drain ended.
func script(cur []*section, known knownFunc, lives []map[string]liveServer, pending map[string]*drain) (scriptOut, error) {
	var out scriptOut
	var drains []string
	for i, s := range cur {
		c, err := steps(s, known, lives[i], pending)
		if err != nil {
			return out, err
		}
		out.cmds = append(out.cmds, c.updates...)
		out.cancel = append(out.cancel, c.cancel...)
		for _, sv := range c.moves {
			id := s.name + "/" + sv.name
			state := "ready"
			if sv.disabled {
				state = "maint"
			}
			d := &drain{id: id, server: sv, then: []string{fmt.Sprintf("set server %s addr %s port %d", id, sv.addr, sv.port), "set server " + id + " state " + state}}
			if !sv.disabled {
				// A stand-in of an earlier move may still drain.
				standin := standinName(sv.name)
				for n := 2; s.server(standin) != nil || lives[i][standin] != (liveServer{}); n++ {
					if n > maxStandins {
						return out, fmt.Errorf("servers %s/%s… are in the way of a stand-in for %s", s.name, standinName(sv.name), id)
					}
					standin = fmt.Sprintf("%s:%d", standinName(sv.name), n)
				}
				moved := *sv
				moved.name = standin
				out.cmds = append(out.cmds, addCommands(s.name, &moved)...)
				sid := s.name + "/" + standin
				d.next = &drain{id: sid, server: &moved, then: []string{"set server " + sid + " state maint"}, del: true}
			}
			drains = append(drains, id)
			out.drains = append(out.drains, d)
		}
		for _, name := range c.removals {
			id := s.name + "/" + name
			drains = append(drains, id)
			out.drains = append(out.drains, &drain{id: id, server: known(s.name, name), then: []string{"set server " + id + " state maint"}, del: true})
		}
	}
	for _, id := range drains {
		out.cmds = append(out.cmds, "set server "+id+" state drain")
	}
	return out, nil
}

// standinName names the temporary server that takes a moving server's
// requests at its new address; while the stand-in of an earlier move
// still drains, a later one gets a number (:2, :3, …), up to maxStandins.
// The ':' is a character HAProxy allows in a name and ident does not, so
// no service, whose id is its server's name, can take a stand-in's name
// and so turn every move of another server into a reload.
func standinName(name string) string { return "svcreg:standin:" + name }

const maxStandins = 16

// changes take a backend from its live state to the file's: updates are
// commands (adds and changed weights and states), moves the servers whose
// address changes, removals the names of the servers that leave, cancel
// the drains that end.
type changes struct {
	updates  []string
	moves    []*server
	removals []string
	cancel   []string
}

// steps computes the changes for one backend. A server of the file that
// is live, but that neither file describes (nor a drain under way), has
// settings the adapter cannot see: an error, and the backend is
// reloaded. A live server the file does not have is drained and deleted.
func steps(s *section, known knownFunc, live map[string]liveServer, pending map[string]*drain) (changes, error) {
	var c changes
	// The servers a drain under way will change: a moved server and its
	// stand-in.
	moving := map[string]*drain{}
	for _, d := range pending {
		if d.next != nil {
			moving[d.next.id] = d
		}
	}
	cancelled, removed := map[string]bool{}, map[string]bool{}
	for _, sv := range s.servers {
		id := s.name + "/" + sv.name
		l, ok := live[sv.name]
		if !ok {
			if sv.unsupported != "" {
				return c, fmt.Errorf("server %s is not live and cannot be added at runtime: %s", id, sv.unsupported)
			}
			c.updates = append(c.updates, addCommands(s.name, sv)...)
			continue
		}
		ov := known(s.name, sv.name)
		d := pending[id]
		if d != nil && d.server != nil {
			ov = d.server
		}
		// A line the adapter could not read (unchanged, it is the live
		// server's) hides settings the new line may not have.
		if ov == nil || !sameOptions(ov, sv) || (ov.unsupported != "" && !serverEqual(ov, sv)) {
			return c, fmt.Errorf("server %s is live but not as the installed file describes it", id)
		}
		if sv.unsupported != "" {
			continue // unchanged (Plan checked), and not readable
		}
		if l.weight != sv.weight && !sv.agent {
			c.updates = append(c.updates, fmt.Sprintf("set weight %s %d", id, sv.weight))
		}
		if d != nil && d.next != nil && d.server.addr == sv.addr && d.server.port == sv.port && d.server.disabled == sv.disabled {
			continue // moving there already
		}
		if d != nil {
			c.cancel = append(c.cancel, id)
			cancelled[id] = true
			if d.next != nil { // moving elsewhere: its stand-in goes
				if _, name, _ := strings.Cut(d.next.id, "/"); live[name] != (liveServer{}) {
					c.removals = append(c.removals, name)
					removed[name] = true
				}
			}
		}
		if l.addr != sv.addr || l.port != sv.port {
			c.moves = append(c.moves, sv)
			continue
		}
		switch {
		case sv.disabled && !l.maint():
			c.updates = append(c.updates, "set server "+id+" state maint")
		case !sv.disabled && (l.maint() || l.drain()):
			c.updates = append(c.updates, "set server "+id+" state ready")
		}
	}
	for _, name := range sortedKeys(live) {
		id := s.name + "/" + name
		if s.server(name) != nil || removed[name] {
			continue
		}
		if _, ok := pending[id]; ok {
			continue // leaving already
		}
		if m := moving[id]; m != nil && !cancelled[m.id] {
			continue // a stand-in of a move under way
		}
		c.removals = append(c.removals, name)
	}
	return c, nil
}

// addCommands adds a server. HAProxy 2.6 creates it in maintenance with
// its checks off; the file's server is on. parseServer counts the words
// of its "add server".
func addCommands(backend string, sv *server) []string {
	id := backend + "/" + sv.name
	add := "add server " + id + " " + sv.hostPort()
	for _, o := range sv.options {
		add += " " + o
	}
	if sv.weight != 1 {
		add += " weight " + strconv.Itoa(sv.weight)
	}
	cmds := []string{add}
	if sv.check {
		cmds = append(cmds, "enable health "+id)
	}
	if sv.agent {
		cmds = append(cmds, "enable agent "+id)
	}
	if !sv.disabled {
		cmds = append(cmds, "set server "+id+" state ready")
	}
	return cmds
}

// liveFromFile is the live state a backend has when HAProxy loaded it
// from the file.
func liveFromFile(s *section) map[string]liveServer {
	m := map[string]liveServer{}
	for _, sv := range s.servers {
		l := liveServer{name: sv.name, addr: sv.addr, port: sv.port, weight: sv.weight}
		if sv.disabled {
			l.admin = adminForcedMaint | adminConfigMaint
		}
		m[sv.name] = l
	}
	return m
}

func sameServers(a, b *section) bool {
	return slices.EqualFunc(a.servers, b.servers, serverEqual)
}

func serverEqual(a, b *server) bool {
	return a.line == b.line
}

func duplicateName(s *section) string {
	seen := map[string]bool{}
	for _, sv := range s.servers {
		if seen[sv.name] {
			return sv.name
		}
		seen[sv.name] = true
	}
	return ""
}
