package haproxy

import (
	"fmt"
	"slices"
	"strconv"

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
			if ov != nil && !sameOptions(ov, sv) {
				return nil, runtime.Reloadf("server %s/%s: settings other than address, port, weight and disabled changed", s.name, sv.name)
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
		if s.kind == "backend" || s.kind == "listen" {
			cur = append(cur, s)
			old = append(old, p.old.sections[i])
		}
	}
	return cur, old
}

// Commands returns what Apply would send if the live state were the
// installed file.
func (p *plan) Commands() []string {
	var out, removals []string
	cur, old := p.backends()
	for i, s := range cur {
		st, err := steps(s, old[i], liveFromFile(old[i]))
		if err != nil {
			out = append(out, "# "+err.Error())
			continue
		}
		out = append(out, st.updates...)
		for _, name := range st.removals {
			id := s.name + "/" + name
			removals = append(removals, "set server "+id+" state drain",
				fmt.Sprintf("# wait until %s has no sessions (at most %s)", id, p.a.drainTimeout),
				"set server "+id+" state maint", "del server "+id)
		}
	}
	return append(out, removals...)
}

// changes are the commands that take a backend from its live state to
// the file's, in two parts: updates (adds and changes, sent first, so new
// capacity is there before old goes) and removals (drained, then deleted).
type changes struct {
	updates  []string
	removals []string // server names
}

// steps computes the changes for one backend. old is the section in the
// installed file: a server that is live but not there has settings the
// adapter cannot see, so the backend is reloaded.
func steps(s, old *section, live map[string]liveServer) (changes, error) {
	var c changes
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
		ov := old.server(sv.name)
		if ov == nil || !sameOptions(ov, sv) {
			return c, fmt.Errorf("server %s is live but not as the installed file describes it", id)
		}
		if sv.unsupported != "" {
			continue // unchanged (Plan checked), and not readable
		}
		if l.addr != sv.addr || l.port != sv.port {
			c.updates = append(c.updates, fmt.Sprintf("set server %s addr %s port %d", id, sv.addr, sv.port))
		}
		if l.weight != sv.weight {
			c.updates = append(c.updates, fmt.Sprintf("set weight %s %d", id, sv.weight))
		}
		switch {
		case sv.disabled && !l.maint():
			c.updates = append(c.updates, "set server "+id+" state maint")
		case !sv.disabled && (l.maint() || l.drain()):
			c.updates = append(c.updates, "set server "+id+" state ready")
		}
	}
	for _, name := range sortedKeys(live) {
		if s.server(name) == nil {
			c.removals = append(c.removals, name)
		}
	}
	return c, nil
}

// addCommands adds a server. HAProxy 2.6 creates it in maintenance with
// its checks off; the file's server is on.
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
			l.admin = adminConfigMaint
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
