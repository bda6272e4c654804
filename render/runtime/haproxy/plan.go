package haproxy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
	cur, old := p.backends()
	lives := make([]map[string]liveServer, len(old))
	for i, s := range old {
		lives[i] = liveFromFile(s)
	}
	ops, err := script(cur, old, lives)
	if err != nil {
		return []string{"# " + err.Error()}
	}
	var out []string
	for _, o := range ops {
		if o.cmd != "" {
			out = append(out, o.cmd)
			continue
		}
		out = append(out, fmt.Sprintf("# wait until no sessions are left on %s (at most %s)", strings.Join(o.wait, ", "), p.a.drainTimeout))
	}
	return out
}

// op is one step of a script: a command, or a wait until the servers in
// wait ("backend/server") have no sessions, cutting those still busy at
// the drain timeout.
type op struct {
	cmd  string
	wait []string
}

func cmds(cs ...string) []op {
	ops := make([]op, len(cs))
	for i, c := range cs {
		ops[i] = op{cmd: c}
	}
	return ops
}

// script is what takes the backends from their live state to the file's:
//
//  1. servers added and settings changed, so new capacity is there before
//     old capacity goes; a server that moves to another address gets a
//     stand-in at the new address;
//  2. the servers that leave or move are drained together: no new
//     requests, and the script waits until their requests are done;
//  3. the moved servers get their new address (which closes their idle
//     connections: with none in use, none to the old address is left) and
//     take requests again; the servers that leave are deleted;
//  4. the stand-ins are drained and deleted.
//
// Changing the address of a server in use would be quicker, but
// connections busy at that moment go back to the server's idle pool
// afterwards and carry later requests to the old address.
func script(cur, old []*section, lives []map[string]liveServer) ([]op, error) {
	var updates, finish, standins []op
	var drain, standinIDs []string
	for i, s := range cur {
		c, err := steps(s, old[i], lives[i])
		if err != nil {
			return nil, err
		}
		if s.unsupported != "" && (len(c.updates) > 0 || len(c.moves) > 0 || len(c.removals) > 0) {
			return nil, fmt.Errorf("backend %s differs from the file, and %s", s.name, s.unsupported)
		}
		updates = append(updates, cmds(c.updates...)...)
		for _, sv := range c.moves {
			id := s.name + "/" + sv.name
			if !sv.disabled {
				standin := standinName(sv.name)
				if s.server(standin) != nil || lives[i][standin] != (liveServer{}) {
					return nil, fmt.Errorf("server %s/%s is in the way of the stand-in for %s", s.name, standin, id)
				}
				moved := *sv
				moved.name = standin
				updates = append(updates, cmds(addCommands(s.name, &moved)...)...)
				standinIDs = append(standinIDs, s.name+"/"+standin)
			}
			drain = append(drain, id)
			state := "ready"
			if sv.disabled {
				state = "maint"
			}
			finish = append(finish, cmds(fmt.Sprintf("set server %s addr %s port %d", id, sv.addr, sv.port), "set server "+id+" state "+state)...)
		}
		for _, name := range c.removals {
			id := s.name + "/" + name
			drain = append(drain, id)
			finish = append(finish, cmds("set server "+id+" state maint", "del server "+id)...)
		}
	}
	ops := updates
	ops = append(ops, drainOps(drain)...)
	ops = append(ops, finish...)
	ops = append(ops, drainOps(standinIDs)...)
	for _, id := range standinIDs {
		standins = append(standins, cmds("set server "+id+" state maint", "del server "+id)...)
	}
	return append(ops, standins...), nil
}

func drainOps(ids []string) []op {
	if len(ids) == 0 {
		return nil
	}
	var ops []op
	for _, id := range ids {
		ops = append(ops, op{cmd: "set server " + id + " state drain"})
	}
	return append(ops, op{wait: ids})
}

// standinName names the temporary server that takes a moving server's
// requests at its new address.
func standinName(name string) string { return "svcreg-standin-" + name }

// changes take a backend from its live state to the file's: updates are
// commands (adds and changed weights and states), moves the servers whose
// address changes, removals the names of the servers that leave.
type changes struct {
	updates  []string
	moves    []*server
	removals []string
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
		if l.weight != sv.weight {
			c.updates = append(c.updates, fmt.Sprintf("set weight %s %d", id, sv.weight))
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
