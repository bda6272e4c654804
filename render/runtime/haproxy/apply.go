// Package haproxy is the runtime adapter for HAProxy 2.6 and later: it
// applies changes of server lines (servers added or removed, address,
// port, weight, disabled) through HAProxy's runtime API ("add server",
// "set server", "del server"), drains a removed server in the background
// before deleting it, and reads "show servers state" back to check that
// the live state matches the file.
package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/render/runtime"
)

// Defaults.
const (
	DefaultDrainTimeout = 10 * time.Second
	DefaultTimeout      = 5 * time.Second
)

// Adapter is the HAProxy runtime adapter. It keeps the drains under way
// between passes: a pass puts the servers that leave or move in drain
// state and returns; the drains finish in the background (Settings.Go).
type Adapter struct {
	// cli changes the live state and reads it back; watch is the drains'
	// look at their servers' sessions, on a connection of its own, so
	// that a change does not wait behind it.
	cli, watch   *cli
	drainTimeout time.Duration
	log          *slog.Logger
	goFn         func(context.Context, func(context.Context) error)
	// poll is how soon a drain first looks at the sessions of the
	// servers it drains, and again after a change; while the same drains
	// stay busy the wait doubles up to maxPoll, since each look reads the
	// stats of every server of their backends (a client that keeps a
	// session on a leaving server open must not keep both processes busy
	// with those reads for the whole drain timeout).
	poll, maxPoll time.Duration
	kick          chan struct{}                        // wakes the drain loop: a drain was added
	after         func(time.Duration) <-chan time.Time // the drain loop's timer; nil: time.After

	// mu serialises the changes of live state: an Apply or Revert, and
	// each step of a drain.
	mu       sync.Mutex
	drains   map[string]*drain // by "backend/server"
	draining bool              // the drain loop runs
	// lives is each backend's live state as last read back, after the
	// commands that changed it: what the next Apply starts from, so that
	// it takes one round trip (its commands and the read-back) instead
	// of two. It may be stale (HAProxy restarted, or its state changed
	// by hand); the read-back finds that out, and the Apply starts over
	// from a fresh read.
	lives map[string]map[string]liveServer
	// stop is the last Apply's context: its end ends the drains, not
	// the Apply's own commands.
	stop context.Context
}

// New returns an Adapter for the socket in s.
func New(s runtime.Settings) (runtime.Adapter, error) {
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.DrainTimeout <= 0 {
		s.DrainTimeout = DefaultDrainTimeout
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	c, err := newCLI(s.Socket, s.Timeout)
	if err != nil {
		return nil, err
	}
	watch := &cli{network: c.network, address: c.address, master: c.master, timeout: c.timeout}
	return &Adapter{cli: c, watch: watch, drainTimeout: s.DrainTimeout, log: s.Log, goFn: s.Go, poll: 5 * time.Millisecond, maxPoll: 250 * time.Millisecond, kick: make(chan struct{}, 1),
		drains: map[string]*drain{}, lives: map[string]map[string]liveServer{}}, nil
}

// Apply takes the live state of every backend of the new file to the
// file's and checks it; the drains it starts finish in the background.
func (p *plan) Apply(ctx context.Context) error {
	cur, _ := p.backends()
	_, err := p.a.apply(ctx, cur, knownIn(p.old))
	return err
}

// Revert takes the live state back to the installed file's.
func (p *plan) Revert(ctx context.Context) error {
	_, old := p.backends()
	_, err := p.a.apply(ctx, old, knownIn(p.old, p.cur))
	return err
}

// Reconcile takes the live state of the installed file's backends to the
// file's, from a fresh read of it: a server the file does not have is
// drained and deleted, one it has is added, made ready or put in
// maintenance, and given its weight and address. Backends whose servers
// the adapter cannot change (see Plan) are left out: no change went to
// them through the runtime API.
func (a *Adapter) Reconcile(ctx context.Context, installed []byte) ([]string, error) {
	c, target := reconcileTarget(installed)
	if len(target) == 0 {
		return nil, nil
	}
	if err := a.readLives(ctx, target); err != nil {
		return nil, err
	}
	return a.apply(ctx, target, knownIn(c))
}

// ReconcileCommands is runtime.Reconciler's: it reads the live state of
// the installed file's backends and returns what Reconcile would send.
func (a *Adapter) ReconcileCommands(ctx context.Context, installed []byte) ([]string, error) {
	c, target := reconcileTarget(installed)
	if len(target) == 0 {
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	lives, err := a.readFresh(ctx, target)
	if err != nil {
		return nil, err
	}
	sc, err := script(target, knownIn(c), lives, a.drains)
	if err != nil {
		return nil, &runtime.Failure{Step: "verify", Err: err}
	}
	return sc.commands(a.drainTimeout), nil
}

// reconcileTarget parses the installed file and returns its backends
// that the runtime API changes.
func reconcileTarget(installed []byte) (*config, []*section) {
	c := parseConfig(installed)
	var target []*section
	for _, s := range c.sections {
		if runtimeBackend(s) {
			target = append(target, s)
		}
	}
	return c, target
}

// unreachableIfClosed is err, a failure to read the live state, as
// runtime.ErrUnreachable if HAProxy closed the connection (at any point
// of the exchange, which is read-only: show servers state, so nothing was
// changed): stopping, it does not answer, which is not the state's
// failure.
func unreachableIfClosed(err error) error {
	var f *runtime.Failure
	if errors.As(err, &f) && f.Step == "connect" && !errors.Is(err, runtime.ErrUnreachable) && closedOnUs(err) {
		return &runtime.Failure{Step: f.Step, Err: fmt.Errorf("%w: %w", runtime.ErrUnreachable, f.Err)}
	}
	return err
}

// closedOnUs says whether err is the peer closing the connection.
func closedOnUs(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// readLives reads the live state of the backends afresh, for the next
// apply to start from.
func (a *Adapter) readLives(ctx context.Context, target []*section) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	lives, err := a.readFresh(ctx, target)
	if err != nil {
		return err
	}
	for i, s := range target {
		a.lives[s.name] = lives[i]
	}
	return nil
}

// readFresh reads the live state of the backends on a new connection (to
// the process that answers the socket now), with a failure to reach it
// as runtime.ErrUnreachable (unreachableIfClosed). a.mu is held.
func (a *Adapter) readFresh(ctx context.Context, target []*section) ([]map[string]liveServer, error) {
	a.cli.fresh()
	lives, err := a.read(ctx, target)
	if err != nil {
		return nil, unreachableIfClosed(err)
	}
	return lives, nil
}

// read forgets the live state read last and reads it again: one round
// trip. a.mu is held.
func (a *Adapter) read(ctx context.Context, target []*section) ([]map[string]liveServer, error) {
	clear(a.lives)
	outs, err := a.cli.runAll(ctx, showCommands(target))
	if err != nil {
		return nil, err
	}
	return parseStates(target, outs)
}

// Reset drops the drains under way: a reload makes the live state the
// file's, and a drain must not act on the new process's servers. The
// connection goes too: it may be with the process the reload replaces.
func (a *Adapter) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.drains)
	clear(a.lives)
	a.cli.fresh()
	a.watch.fresh()
}

// apply takes the live state of the backends to theirs: it runs the
// script from the live state read last, with the state read back in the
// same round trip, and checks it. When the state read last is missing or
// was stale (a command refused, or the state read back is not the
// target), it reads the live state and runs the script from that: two
// round trips. It returns the commands HAProxy took.
func (a *Adapter) apply(ctx context.Context, target []*section, known knownFunc) (sent []string, _ error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Cut between a command and its read-back, an apply would leave a
	// change that neither a revert nor a reload knows of: its commands
	// run to the end (each bounded). The drains it leaves stop with ctx.
	a.stop, ctx = ctx, context.WithoutCancel(ctx)
	// The process that answers the socket now is the one to change, and
	// the one whose sessions the drains look at.
	a.cli.fresh()
	a.watch.fresh()
	if lives := a.cached(target); lives != nil {
		drains := maps.Clone(a.drains)
		at := a.applyFrom(ctx, target, known, lives)
		sent = at.sent
		var f *runtime.Failure
		if at.err == nil || !errors.As(at.err, &f) || (f.Step != "command" && f.Step != "verify") {
			return sent, a.drained(ctx, at.err)
		}
		a.log.Debug("the live state read last was stale; applying the change again from the live state", "err", at.err)
		known = addedKnown(known, target, at.added)
		if at.read != nil {
			// HAProxy took every command, and the state it read back
			// is the live one: the change goes on from there, with the
			// drains the attempt started.
			at = a.applyFrom(ctx, target, known, at.read)
			return append(sent, at.sent...), a.drained(ctx, at.err)
		}
		a.drains = drains
	}
	lives, err := a.read(ctx, target)
	if err != nil {
		return sent, err
	}
	at := a.applyFrom(ctx, target, known, lives)
	return append(sent, at.sent...), a.drained(ctx, at.err)
}

// addedKnown extends known with the servers of the target that an
// attempt added: they are live with the file's settings.
func addedKnown(known knownFunc, target []*section, added []string) knownFunc {
	if len(added) == 0 {
		return known
	}
	isAdded := make(map[string]bool, len(added))
	for _, id := range added {
		isAdded[id] = true
	}
	byName := make(map[string]*section, len(target))
	for _, s := range target {
		if _, ok := byName[s.name]; !ok {
			byName[s.name] = s
		}
	}
	return func(backend, name string) *server {
		if sv := known(backend, name); sv != nil {
			return sv
		}
		if s := byName[backend]; s != nil && isAdded[backend+"/"+name] {
			return s.server(name)
		}
		return nil
	}
}

// cached returns the live state of the backends as read last, or nil if
// one of them was not read since the last failure.
func (a *Adapter) cached(target []*section) []map[string]liveServer {
	lives := make([]map[string]liveServer, len(target))
	for i, s := range target {
		l, ok := a.lives[s.name]
		if !ok {
			return nil
		}
		lives[i] = maps.Clone(l)
	}
	return lives
}

func showCommands(target []*section) []string {
	show := make([]string, len(target))
	for i, s := range target {
		show[i] = "show servers state " + s.name
	}
	return show
}

// attempt is what applyFrom did: the commands HAProxy took, the servers
// ("backend/server") it added, and, when it took every command, the live
// state it read back after them.
type attempt struct {
	sent  []string
	added []string
	read  []map[string]liveServer
	err   error
}

// applyFrom runs the script that takes the backends from lives to
// target, then reads the state back and checks it: one round trip. It
// keeps what it read back as the state the next apply starts from.
func (a *Adapter) applyFrom(ctx context.Context, target []*section, known knownFunc, lives []map[string]liveServer) (at attempt) {
	clear(a.lives)
	sc, err := script(target, known, lives, a.drains)
	if err != nil {
		return attempt{err: &runtime.Failure{Step: "verify", Err: err}}
	}
	for _, id := range sc.cancel {
		delete(a.drains, id)
	}
	outs, err := a.cli.runAll(ctx, append(slices.Clip(sc.cmds), showCommands(target)...))
	if err != nil {
		return attempt{err: err}
	}
	for i, cmd := range sc.cmds {
		if accepted(cmd, outs[i]) {
			at.sent = append(at.sent, cmd)
		}
		if rest, ok := strings.CutPrefix(cmd, "add server "); ok && accepted(cmd, outs[i]) {
			id, _, _ := strings.Cut(rest, " ")
			at.added = append(at.added, id)
		}
	}
	if at.err = a.accepted(sc.cmds, outs); at.err != nil {
		return at
	}
	for _, d := range sc.drains {
		d.deadline = time.Now().Add(a.drainTimeout)
		a.drains[d.id] = d
	}
	if len(sc.drains) > 0 && a.draining {
		// A drain this apply added is looked at soon, not at the end of
		// a wait grown long while others were held.
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	if at.read, at.err = parseStates(target, outs[len(sc.cmds):]); at.err != nil {
		at.read = nil
		return at
	}
	for i, s := range target {
		// verify takes out of the map what it has checked.
		if at.err = a.verify(s, maps.Clone(at.read[i])); at.err != nil {
			return at
		}
	}
	for i, s := range target {
		a.lives[s.name] = at.read[i]
	}
	return at
}

// drained starts the drain loop after a successful apply, if drains are
// waiting and it does not run.
func (a *Adapter) drained(ctx context.Context, err error) error {
	if err != nil || len(a.drains) == 0 {
		return err
	}
	if a.draining {
		return nil // applyFrom kicked it for a drain it added
	}
	a.draining = true
	if a.goFn == nil {
		a.mu.Unlock()
		defer a.mu.Lock()
		return a.drainAll(ctx)
	}
	a.goFn(a.stop, a.drainAll)
	return nil
}

// exchange runs commands that change the state of a backend and reads
// the backend's state back: the answers to the commands, and the state
// kept as the one the next apply starts from (forgotten if unreadable).
func (a *Adapter) exchange(ctx context.Context, backend string, cmds []string) ([]string, error) {
	delete(a.lives, backend)
	outs, err := a.cli.runAll(ctx, append(slices.Clip(cmds), "show servers state "+backend))
	if err != nil {
		return nil, err
	}
	if live, err := parseState(outs[len(cmds)]); err == nil {
		a.lives[backend] = live
	}
	return outs[:len(cmds)], nil
}

// accepted checks HAProxy's answers to commands that change state.
func (a *Adapter) accepted(cmds, outs []string) error {
	for i, cmd := range cmds {
		if !accepted(cmd, outs[i]) {
			return &runtime.Failure{Step: "command", Err: fmt.Errorf("HAProxy refused %q: %s", cmd, firstLine(outs[i]))}
		}
		a.log.Debug("HAProxy runtime API", "command", cmd, "answer", outs[i])
	}
	return nil
}

// accepted says whether an answer is HAProxy 2.6's success answer for the
// command: "set" and "enable" commands answer nothing, or, for an address
// change, what changed.
func accepted(cmd, out string) bool {
	switch {
	case strings.HasPrefix(cmd, "add server "):
		return out == "New server registered."
	case strings.HasPrefix(cmd, "del server "):
		return out == "Server deleted."
	case strings.HasPrefix(cmd, "set server ") && strings.Contains(cmd, " addr "):
		return strings.Contains(out, "changed from") || strings.HasPrefix(out, "no need to change")
	}
	return out == ""
}

// proxyDisabled is how a process that a reload replaced, and that is
// stopping, answers a command that would change one of its servers.
const proxyDisabled = "Proxy is disabled."

// noSuchServer is HAProxy's answer to a command that names a server its
// backend does not have.
const noSuchServer = "No such server."

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if s == "" {
		return "(no answer)"
	}
	return s
}

// Admin state bits of "show servers state" (management guide). A server
// the file disables is loaded with adminForcedMaint and adminConfigMaint;
// "set server … state ready" clears the first only, and the second alone
// is no maintenance (HAProxy's SRV_ADMF_MAINT leaves it out): the server
// takes requests.
const (
	adminForcedMaint  = 0x01
	adminConfigMaint  = 0x04
	adminForcedDrain  = 0x08
	adminResolveMaint = 0x20
)

// liveServer is a server as "show servers state" describes it.
type liveServer struct {
	name   string
	addr   netip.Addr
	port   int
	admin  int
	weight int
}

func (l liveServer) maint() bool {
	return l.admin&(adminForcedMaint|adminResolveMaint) != 0
}
func (l liveServer) drain() bool { return l.admin&adminForcedDrain != 0 }

// parseStates reads the answers to "show servers state BACKEND" for each
// backend of target.
func parseStates(target []*section, outs []string) ([]map[string]liveServer, error) {
	lives := make([]map[string]liveServer, len(target))
	for i, s := range target {
		var err error
		if lives[i], err = parseState(outs[i]); err != nil {
			return nil, &runtime.Failure{Step: "verify", Err: fmt.Errorf("show servers state %s: %w", s.name, err)}
		}
	}
	return lives, nil
}

// parseState reads format 1 of "show servers state": a version line, a
// header line naming the columns, then one line per server.
func parseState(out string) (map[string]liveServer, error) {
	col, rows, err := stateRows(out, "srv_name", "srv_addr", "srv_port", "srv_admin_state", "srv_uweight")
	if err != nil {
		return nil, err
	}
	live := map[string]liveServer{}
	for _, f := range rows {
		var l liveServer
		var err error
		l.name = f[col["srv_name"]]
		// "-": a server without an IP address (a unix socket, a name not
		// resolved): a line the adapter cannot read, or one it must move.
		if addr := f[col["srv_addr"]]; addr != "-" {
			if l.addr, err = netip.ParseAddr(addr); err != nil {
				return nil, fmt.Errorf("server %s: address %q", l.name, addr)
			}
			l.addr = l.addr.Unmap()
		}
		nums := []*int{&l.port, &l.admin, &l.weight}
		for i, c := range []string{"srv_port", "srv_admin_state", "srv_uweight"} {
			if *nums[i], err = strconv.Atoi(f[col[c]]); err != nil {
				return nil, fmt.Errorf("server %s: %s %q", l.name, c, f[col[c]])
			}
		}
		live[l.name] = l
	}
	return live, nil
}

// stateRows splits format 1 of "show servers state" into its columns, by
// name, and its server lines, split into fields; the columns in need
// must be there.
func stateRows(out string, need ...string) (map[string]int, [][]string, error) {
	lines := strings.Split(out, "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[0]) != "1" || !strings.HasPrefix(lines[1], "# ") {
		return nil, nil, fmt.Errorf("unexpected answer: %s", firstLine(out))
	}
	col := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[1], "# ")) {
		col[name] = i
	}
	for _, c := range need {
		if _, ok := col[c]; !ok {
			return nil, nil, fmt.Errorf("no column %s in the answer", c)
		}
	}
	var rows [][]string
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < len(col) {
			return nil, nil, fmt.Errorf("short line %q", line)
		}
		rows = append(rows, f)
	}
	return col, rows, nil
}

// verify checks that a backend's live servers are the file's, apart from
// the drains under way: a server that leaves may still be live, and one
// that moves is still at its old address while its stand-in takes its
// requests.
func (a *Adapter) verify(s *section, live map[string]liveServer) error {
	var diffs []string
	for _, d := range a.drains {
		if b, name, _ := strings.Cut(d.id, "/"); b == s.name {
			delete(live, name)
			if d.next != nil {
				delete(live, strings.TrimPrefix(d.next.id, b+"/"))
			}
		}
	}
	for _, sv := range s.servers {
		l, ok := live[sv.name]
		delete(live, sv.name)
		if d := a.drains[s.name+"/"+sv.name]; d != nil && d.next != nil {
			continue // moving
		}
		switch {
		case !ok:
			diffs = append(diffs, sv.name+" is missing")
		case sv.unsupported != "":
			// A line the adapter cannot read, unchanged: present is all
			// it can check.
		case l.addr != sv.addr || l.port != sv.port:
			diffs = append(diffs, fmt.Sprintf("%s is at %s:%d, not %s", sv.name, l.addr, l.port, sv.hostPort()))
		case l.weight != sv.weight && !sv.agent:
			diffs = append(diffs, fmt.Sprintf("%s has weight %d, not %d", sv.name, l.weight, sv.weight))
		case sv.disabled != l.maint() || l.drain():
			diffs = append(diffs, fmt.Sprintf("%s has admin state %#x, the file says disabled=%t", sv.name, l.admin, sv.disabled))
		}
	}
	for _, name := range sortedKeys(live) {
		diffs = append(diffs, name+" is live but not in the file")
	}
	if len(diffs) > 0 {
		return &runtime.Failure{Step: "verify", Err: fmt.Errorf("backend %s: %s", s.name, strings.Join(diffs, "; "))}
	}
	return nil
}

func (a *Adapter) timer(d time.Duration) <-chan time.Time {
	if a.after != nil {
		return a.after(d)
	}
	return time.After(d)
}

// drainAll finishes the drains under way: while there are any, it looks
// at their servers' sessions (every poll at first, less often while the
// same drains wait: see Adapter.poll) and takes each drain a step when
// its server has none left, or at the drain timeout. It returns when no
// drain is left, or at the first failure (after which the caller
// reloads).
func (a *Adapter) drainAll(ctx context.Context) error {
	err := a.drainLoop(ctx)
	if err != nil {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.draining = false
		clear(a.drains) // the caller reloads
		clear(a.lives)
	}
	return err
}

func (a *Adapter) drainLoop(ctx context.Context) error {
	iids := map[string]string{} // backends' numeric ids, for busy
	type seen struct {
		d        *drain
		deleting bool
	}
	wait := a.poll
	var before map[string]seen // the drains at the look before
	for {
		a.mu.Lock()
		looked := map[string]*drain{} // the drains whose sessions busy looks at
		now := map[string]seen{}
		for id, d := range a.drains {
			if d.deleting.IsZero() {
				looked[id] = d
			}
			now[id] = seen{d, !d.deleting.IsZero()}
		}
		if maps.Equal(now, before) {
			wait = min(2*wait, max(a.maxPoll, a.poll))
		} else {
			wait = a.poll // a drain came, went or moved on to its deletion
		}
		before = now
		if len(a.drains) == 0 {
			// Under mu: an Apply that adds a drain from now on starts
			// the loop again.
			a.draining = false
			a.mu.Unlock()
			return nil
		}
		a.mu.Unlock()
		busy, gone, err := a.busy(ctx, looked, iids)
		if err != nil {
			// Its commands only read: a connection closed is nothing
			// answering, not a change cut short.
			err = unreachableIfClosed(err)
		} else {
			err = a.sweep(ctx, looked, busy, gone)
		}
		if err != nil && !a.waitUnreachable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return &runtime.Failure{Step: "drain", Err: ctx.Err()}
		case <-a.timer(wait - time.Duration(mrand.Int64N(int64(wait)/10+1))):
		case <-a.kick: // a drain was added: the next look resets the wait
		}
	}
}

// waitUnreachable says whether the drains look again after nothing
// answered the runtime API (err: no command was sent): HAProxy's master
// CLI goes while the master executes itself again, at a reload, and the
// process that answers next loaded the installed file (sweep ends the
// drains of the servers it does not have). Once every drain is past its
// timeout with nothing answering, the drains fail: the caller reloads.
// It takes a.mu.
func (a *Adapter) waitUnreachable(err error) bool {
	if !errors.Is(err, runtime.ErrUnreachable) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.lives)
	now := time.Now()
	for _, d := range a.drains {
		if now.Before(d.deadline) || now.Before(d.deleting) {
			a.log.Debug("nothing answers the runtime API; the drains look again", "err", err)
			return true
		}
	}
	return false
}

// sweep takes each drain under way a step, backend by backend: a drain
// whose server has no sessions left (looked holds the drains busy was
// asked about, busy and gone its answer: a drain an Apply replaced since
// waits for the next look) or is past the drain timeout runs its
// commands, and one whose server the process that answers does not have
// (gone) is over; then the deletions due are tried. A backend's drains go together: one round trip
// for their commands, one for their deletions, one for the stand-ins that
// drain next, each reading the backend's state back once, so that a
// thousand servers leaving cost three round trips rather than two
// thousand, each reading the whole backend. mu is held for one backend at
// a time, so that an Apply waits for one backend's round trips at most; a
// drain that an Apply ended or replaced meanwhile is not in a.drains any
// more, or is the new one.
func (a *Adapter) sweep(ctx context.Context, looked map[string]*drain, busy, gone map[string]bool) error {
	a.mu.Lock()
	byBackend := map[string][]string{}
	for id, d := range a.drains {
		byBackend[d.backend()] = append(byBackend[d.backend()], id)
	}
	a.mu.Unlock()
	for _, b := range sortedKeys(byBackend) {
		ids := byBackend[b]
		slices.Sort(ids)
		a.mu.Lock()
		err := a.sweepBackend(ctx, b, ids, looked, busy, gone)
		a.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// sweepBackend is sweep for backend b's drains ids, with mu held.
func (a *Adapter) sweepBackend(ctx context.Context, b string, ids []string, looked map[string]*drain, busy, gone map[string]bool) error {
	var due, deleting []*drain
	var cmds []string
	var ranges [][2]int // each due drain's commands in cmds
	now := time.Now()
	for _, id := range ids {
		d := a.drains[id]
		switch {
		case d == nil:
		case !d.deleting.IsZero():
			deleting = append(deleting, d)
		case looked[id] == d && gone[id]:
			// A reload replaced the process that had the server (an
			// operator's, since the renderer's own ends the drains),
			// and an Apply since made the drain look at the new one,
			// which loaded the installed file: the server has left (or
			// is at its new address, with no stand-in). Its sessions on
			// the old process end as it stops.
			a.log.Info("the server that drained is not live any more (HAProxy was reloaded); the drain ends", "server", d.id)
			delete(a.drains, id)
		case looked[id] != d || (busy[id] && now.Before(d.deadline)):
		default:
			start := len(cmds)
			if busy[id] {
				a.log.Warn("drain timeout passed; cutting the server's remaining sessions", "server", d.id, "drain_timeout", a.drainTimeout)
				cmds = append(cmds, "shutdown sessions server "+d.id)
			}
			cmds = append(cmds, d.then...)
			due = append(due, d)
			ranges = append(ranges, [2]int{start, len(cmds)})
		}
	}
	if len(due) > 0 {
		outs, err := a.exchange(ctx, b, cmds)
		if err != nil {
			return err
		}
		if slices.Contains(outs, proxyDisabled) {
			// The process that answered is stopping: a reload replaced
			// it (an operator's, since the renderer's own reload ends
			// the drains). Its sessions end as it stops, and the
			// process that replaced it loaded the installed file, in
			// which these servers have left (or are at their new
			// addresses, with no stand-ins). The drains are over;
			// nothing is sent to the new process, and the next apply
			// reads its state.
			a.log.Info("HAProxy was reloaded while servers drained; the drains end, the new process has the installed file's servers", "backend", b, "servers", len(due))
			for _, d := range due {
				delete(a.drains, d.id)
			}
			delete(a.lives, b)
			a.cli.fresh()
			a.watch.fresh()
			return nil
		}
		next := map[string][]*drain{} // stand-ins to drain, by backend
		for i, d := range due {
			r := ranges[i]
			if err := a.accepted(cmds[r[0]:r[1]], outs[r[0]:r[1]]); err != nil {
				return err
			}
			if d.del {
				d.deleting = time.Now().Add(deleteRetry)
				deleting = append(deleting, d)
				continue
			}
			delete(a.drains, d.id)
			if n := d.next; n != nil {
				next[n.backend()] = append(next[n.backend()], n)
			}
		}
		for _, nb := range sortedKeys(next) {
			if err := a.drainStandins(ctx, nb, next[nb]); err != nil {
				return err
			}
		}
	}
	return a.deleteDrained(ctx, b, deleting)
}

// drainStandins puts the stand-ins ns of backend b in drain state, in one
// round trip, and adds their drains. A stand-in the process that answers
// does not have (a reload replaced the one it was added to, and the new
// one loaded the installed file, in which the moved server is at its new
// address) has nothing to drain.
func (a *Adapter) drainStandins(ctx context.Context, b string, ns []*drain) error {
	cmds := make([]string, len(ns))
	for i, n := range ns {
		cmds[i] = "set server " + n.id + " state drain"
	}
	outs, err := a.exchange(ctx, b, cmds)
	if err != nil {
		return err
	}
	for i, n := range ns {
		if outs[i] == noSuchServer {
			a.log.Info("the stand-in of a moved server is not live any more (HAProxy was reloaded); nothing to drain", "server", n.id)
			continue
		}
		if err := a.accepted(cmds[i:i+1], outs[i:i+1]); err != nil {
			return err
		}
		n.deadline = time.Now().Add(a.drainTimeout)
		a.drains[n.id] = n
	}
	return nil
}

// deleteDrained tries to delete drained servers of backend b in one round
// trip. HAProxy refuses to while connections are still attached to one
// (idle ones close shortly after maintenance begins): the next sweep
// tries again, until deleteRetry.
func (a *Adapter) deleteDrained(ctx context.Context, b string, ds []*drain) error {
	if len(ds) == 0 {
		return nil
	}
	cmds := make([]string, len(ds))
	for i, d := range ds {
		cmds[i] = "del server " + d.id
	}
	outs, err := a.exchange(ctx, b, cmds)
	if err != nil {
		return err
	}
	for i, d := range ds {
		cmd, out := cmds[i], outs[i]
		if accepted(cmd, out) || out == noSuchServer {
			// No such server: a reload replaced the process that had
			// it, and the new one does not have it either.
			a.log.Debug("HAProxy runtime API", "command", cmd, "answer", out)
			delete(a.drains, d.id)
			continue
		}
		if !strings.Contains(out, "connection") || time.Now().After(d.deleting) {
			return &runtime.Failure{Step: "command", Err: fmt.Errorf("HAProxy refused %q: %s", cmd, firstLine(out))}
		}
	}
	return nil
}

// busy returns the servers among ids (the keys: "backend/server") that
// still have sessions or queued requests, and those that are gone: not
// servers of their backend in the process that answers (a reload
// replaced the one that had them). A server missing from an answer that
// does not list its backend's servers counts as busy. It asks
// "show stat" by the backend's numeric id, not its name: by name, a
// frontend of the same name is found first, and no server is listed.
// iids holds the ids found so far, by backend name; it is the drain
// loop's own.
func (a *Adapter) busy(ctx context.Context, ids map[string]*drain, iids map[string]string) (busy, gone map[string]bool, _ error) {
	backends := map[string]bool{}
	for id := range ids {
		b, _, _ := strings.Cut(id, "/")
		backends[b] = true
	}
	sessions := map[string]int{}
	for _, b := range slices.Sorted(maps.Keys(backends)) {
		listed, err := a.sessions(ctx, b, iids, sessions)
		if err != nil {
			return nil, nil, err
		}
		backends[b] = listed
	}
	busy, gone = map[string]bool{}, map[string]bool{}
	for id := range ids {
		b, _, _ := strings.Cut(id, "/")
		n, ok := sessions[id]
		switch {
		case !ok && backends[b]:
			gone[id] = true
		case !ok || n > 0:
			busy[id] = true
		}
	}
	return busy, gone, nil
}

// sessions adds backend b's servers' sessions to into, by server id;
// listed says that they are all of b's servers. b's numeric id is read
// from "show servers state b" the first time, and again when the id lists
// no server of b (a reload numbered the proxies anew).
func (a *Adapter) sessions(ctx context.Context, b string, iids map[string]string, into map[string]int) (listed bool, _ error) {
	for again := false; ; again = true {
		iid, ok := iids[b]
		if !ok || again {
			answer, err := a.watch.run(ctx, "show servers state "+b)
			if err != nil {
				return false, err
			}
			col, rows, err := stateRows(answer, "be_id", "be_name")
			if err != nil {
				return false, &runtime.Failure{Step: "drain", Err: fmt.Errorf("show servers state %s: %w", b, err)}
			}
			i := slices.IndexFunc(rows, func(f []string) bool { return f[col["be_name"]] == b })
			if i < 0 {
				return true, nil // no server: every drained one is gone
			}
			iid = rows[i][col["be_id"]]
			iids[b] = iid
		}
		answer, err := a.watch.run(ctx, "show stat "+iid+" 4 -1")
		if err != nil {
			return false, err
		}
		m, err := parseSessions(answer)
		if err != nil {
			return false, &runtime.Failure{Step: "drain", Err: fmt.Errorf("show stat %s (backend %s): %w", iid, b, err)}
		}
		found := false
		for id, n := range m {
			if strings.HasPrefix(id, b+"/") {
				into[id], found = n, true
			}
		}
		if found || again {
			return found, nil
		}
	}
}

// parseSessions reads the CSV of "show stat": current sessions plus
// queued requests, by server id (backend/server).
func parseSessions(out string) (map[string]int, error) {
	lines := strings.Split(out, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, fmt.Errorf("unexpected answer: %s", firstLine(out))
	}
	col := map[string]int{}
	for i, name := range strings.Split(strings.TrimPrefix(lines[0], "# "), ",") {
		col[name] = i
	}
	px, okp := col["pxname"]
	sv, oks := col["svname"]
	scur, okc := col["scur"]
	qcur, okq := col["qcur"]
	if !okp || !oks || !okc || !okq {
		return nil, errors.New("no pxname, svname, scur or qcur column")
	}
	m := map[string]int{}
	for _, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) <= max(px, sv, scur, qcur) {
			continue
		}
		s, _ := strconv.Atoi(f[scur])
		q, _ := strconv.Atoi(f[qcur])
		m[f[px]+"/"+f[sv]] = s + q
	}
	return m, nil
}

// deleteRetry bounds how long a deletion waits for HAProxy to let go of a
// server's connections.
const deleteRetry = 3 * time.Second

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
