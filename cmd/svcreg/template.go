package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/svcreg/svcreg/internal/registryflags"
	"github.com/svcreg/svcreg/internal/statuspage"
	"github.com/svcreg/svcreg/internal/supervise"
	"github.com/svcreg/svcreg/internal/undumpable"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/render"
	"github.com/svcreg/svcreg/watcher"
)

const templateDescription = `
Watches the registry and keeps files rendered from Go templates (nginx
upstreams, HAProxy backends, ...) in step with it: it lists the registry,
follows its events feed with long-polls, and after each burst of changes
renders every template; for each reload group whose output changed it stages
the files next to their destinations, runs the group's check command, installs
them atomically and runs the reload command once. A failed reload restores
the previous files and reloads again (a new file stays if it passed a check
and is removed otherwise; with no previous file put back, the reload is not
run again). A template with runtime = "haproxy" sends changes of server
lines to HAProxy's runtime API (runtime_socket) instead of reloading, and
reloads for anything else or when the API fails; at each start it makes
HAProxy's live servers the installed file's again. --dry prints the
commands it would send, those of the start included.

Templates come from --config (TOML), from --template flags, or from both
(the flags' are rendered as well as the file's); give at least one. The
registry connection comes from the flags, the config file's [registry], or
the SVCREG_* variables, in that order. An https:// registry whose
certificate a private or self-signed CA issued needs that CA: --ca-cert,
ca_cert in [registry] (relative to the config file) or SVCREG_CA_CERT, a PEM
file whose CAs replace the system's roots for the registry's connection.

Registry data is untrusted: templates should pass it through the safe
functions (endpoints, addr, port, weight, number, ident, nginxString,
nginxMapKey, haproxyString; see the README), which leave a service with
refused data out of the render and report it in the log, /metrics and
/healthz, configuration values through configAs, and other metadata
through metaAs, which use the template's default for a refused value
and report it the same way. A
render is bounded by render_timeout and max_output; env and expandenv do
not see SVCREG_API_KEY, SVCREG_PASSWORD or SVCREG_TOKEN.

--print renders every template for the registry's current state and prints
each full output to stdout; it writes no file and runs no command. On a
terminal, --print and --dry show output from the first control character
or the like on (which registry data may put in a template's output) with
escapes and its backslashes doubled, after a note on stderr; piped, they
write the output as rendered.

With --listen (or the config's listen), / is a read-only status page: the
sync state, each reload group's last render, check, install and reload, the
last installed diff, and plots of the last hour. It shows the registry URL
and username, never a key, password or token.

Signals: SIGTERM and SIGINT stop; SIGHUP re-reads the config file and the
templates and switches to them if they are valid. Template files are also
watched and re-read when they change. A config or template that cannot be
read or parsed is logged and reported (templates_not_loaded in /healthz and
/readyz, which stays 200, and svcreg_template_config_load_failed), and the
ones in use go on rendering. A changed [registry], listen, resync, outage
or [exec] is not applied: a warning names the keys that changed, and it
takes a restart.

--exec COMMAND (or [exec] in the config file) runs the load balancer as
the renderer's child, for containers and hosts without a service manager: it
starts COMMAND in the foreground once the registry is synced and a first
pass has installed every group, and a group's reload_signal (SIGHUP for
nginx, SIGUSR2 for HAProxy master-worker) reloads it. Signals are passed on
to COMMAND, except SIGHUP, which stays the renderer's; after SIGTERM or
SIGINT the renderer exits once COMMAND has (SIGKILL after --grace-period).
If COMMAND exits by itself the renderer exits too; either way its exit code
is COMMAND's (128+N for signal N); 126 COMMAND cannot be run, 127 not found.
With --start-without-registry D ([exec] start_without_registry), a renderer
that has finished no pass D after its start (the registry has not answered)
runs COMMAND on the files a previous run installed, if every destination has
one (a container restarted while the registry is down), and reloads it once
a pass installs what the registry holds.
Orphaned processes are reaped, also as PID 1.

Exit codes (--once, --print): 0 done; 1 other error; 2 usage; 3 bad config or
template, or the registry refused the credentials (at once: a refusal is not
retried until --once-timeout); 4 no sync with the registry within
--once-timeout (the message gives the last error, and the request still
without an answer: the login at the identity endpoint, or the list); 5 a
template failed to render (or min_instances refused it and the existing
file was kept; a destination that does not exist yet is installed, with a
warning); 6 a check command failed; 7 a file could not be
installed; 8 a reload command failed; 130 or 143 stopped by SIGINT or SIGTERM
before the pass went through (a check under way is stopped, and what it
checks is not installed; a reload under way runs to its end; a second
signal ends svcreg at once, leaving a reload command under way to run on
its own).

First deploy, before the load balancer runs: "svcreg template --once
--no-reload" installs the checked files and reloads nothing; then start the
load balancer. On an empty registry, min_instances has no old file to keep:
the template's branch for no services is installed, with a warning. Without --no-reload the reload fails (exit 8), but a file
that did not exist before and passed its check stays installed (with
nothing to restore, removing it would only keep the load balancer from
starting), and the daemon tries its reload again until one passes. Files
no reload has taken (a failed reload) are reloaded by the next start, the
daemon's or another --once run's (not one with --no-reload), even with
nothing changed: a
.NAME.svcreg-reload-pending file next to each says so until a reload passes.`

// Exit codes of svcreg template.
const (
	exitConfig  = 3
	exitSync    = 4
	exitRender  = 5
	exitCheck   = 6
	exitInstall = 7
	exitReload  = 8
)

type templateFlags struct {
	config       string
	templates    stringList
	wait         string
	once         bool
	noReload     bool
	onceTimeout  time.Duration
	dry          bool
	print        bool
	exec         string
	gracePeriod  time.Duration
	startWithout time.Duration
	listen       string
	logFormat    string
	logLevel     string
	stateDir     string
	registry     registry.Config // the connection flags as parsed
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ", ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runTemplate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var f templateFlags
	fs := newFlagSet("template", "svcreg template [--config FILE] [--template SRC:DST[:RELOAD]...] [flags]", templateDescription, stdout)
	fs.StringVar(&f.config, "config", "", "TOML config `file`")
	fs.Var(&f.templates, "template", "`SRC:DST[:RELOAD]`: render SRC to DST and run RELOAD after a change (repeatable)")
	fs.StringVar(&f.wait, "wait", "", "`MIN:MAX` debounce: render after MIN without changes, at most MAX after the first\n(MIN alone: MAX is four times MIN; default 100ms:2s, or the config's [wait])")
	fs.BoolVar(&f.once, "once", false, "wait for a full sync, render, install, reload, then exit")
	fs.DurationVar(&f.onceTimeout, "once-timeout", 30*time.Second, "with --once or --print, how long to wait for the registry")
	fs.BoolVar(&f.noReload, "no-reload", false, "with --once, install the checked files but run no reload command\n(a first deploy, before the load balancer runs)")
	fs.BoolVar(&f.dry, "dry", false, "print what would change (a diff per file; past 1000 changed lines, the new file whole)\nand write and run nothing; it runs until stopped, as the daemon does, unless --once")
	fs.BoolVar(&f.print, "print", false, "wait for a full sync, print the full output of every template to stdout, and exit;\nno file is written and no command run (for debugging templates)")
	fs.StringVar(&f.exec, "exec", "", "`COMMAND` to run in the foreground once the first render is installed, e.g. \"nginx -g 'daemon off;'\"\n(split as a shell would, without a shell; see Running in a container in the README)")
	fs.DurationVar(&f.gracePeriod, "grace-period", render.DefaultGracePeriod, "with --exec, the time the command has to exit after SIGTERM before SIGKILL")
	fs.DurationVar(&f.startWithout, "start-without-registry", 0, "with --exec, start the command after this `duration` without a sync with the registry, on the\nfiles a previous run installed, if every destination has one ([exec] start_without_registry);\n0 waits for the registry")
	fs.StringVar(&f.listen, "listen", "", "`address` for the status page (/), /healthz, /readyz and /metrics (default: the config's listen, or none)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&f.stateDir, "state-dir", "", "`directory` where the spelling endpointsBy kept of names that differ only in case is saved,\n"+
		"so that a restart or a --once run keeps it; \"none\": remembered in memory only\n"+
		"(default: $STATE_DIRECTORY, as systemd's StateDirectory= sets it; else /var/lib/svcreg-template as root,\n"+
		"else $XDG_STATE_HOME/svcreg or ~/.local/state/svcreg)")
	registryflags.Register(fs, &f.registry)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.noReload && !f.once {
		return usagef("--no-reload goes with --once")
	}
	if f.config == "" && len(f.templates) == 0 {
		return usagef("give --config FILE or at least one --template SRC:DST[:RELOAD]")
	}
	for _, t := range f.templates {
		if _, err := render.ParseTemplateFlag(t); err != nil {
			return usageError{err.Error()}
		}
	}
	if f.wait != "" {
		if _, err := parseWaitFlag(f.wait); err != nil {
			return usageError{err.Error()}
		}
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := f.loadConfig(fs)
	if err != nil {
		return exitCodeError{exitConfig, err}
	}
	if cfg.secretInFile {
		warnReadableSecret(log, "--config", f.config, configSecretFix)
	}
	if err := f.checkExecMode(cfg.Config); err != nil {
		return err
	}
	set, err := render.NewSet(cfg.Config)
	if err != nil {
		return exitCodeError{exitConfig, err}
	}
	cfg.Registry.OnFailover = registryflags.LogFailover(log)
	client, err := registryflags.NewClient(cfg.Registry)
	if err != nil {
		return usageError{err.Error()}
	}
	defer client.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// A pass waits for [wait] min without changes anyway: fetching
	// changes that come close together in batches a quarter of that apart
	// costs it little latency; the watcher's own bound (a poll every 2 s
	// after 10 at once) keeps a steady stream from costing a GET a change.
	// A one-shot command ends at once when the registry refuses the
	// credentials (waiting would not cure that); the daemon retries them,
	// as they may be fixed on the server.
	w := watcher.New(watcher.Config{Client: client, Resync: cfg.Resync.D(), Outage: cfg.Outage.D(), Logger: log, Registerer: reg,
		Coalesce: min(cfg.Wait.Min.D()/4, 25*time.Millisecond), StopOnRefusedCredentials: f.once || f.print})
	health := render.NewHealth()
	health.Watch = w.Status
	renderer := render.NewRenderer(log, render.NewMetrics(reg), health)
	// --print and --dry show rendered text, which registry data may have
	// written (a template may put metadata in raw): escaped on a terminal,
	// as rendered when piped.
	shown := stdout
	if isTerminal(stdout) {
		shown = &termWriter{w: stdout, note: func() {
			log.Warn("the output from here on holds characters a terminal would act on: shown escaped, each backslash doubled (piped, it is written as it is)")
		}}
	}
	renderer.Dry, renderer.DryOut, renderer.NoReload = f.dry, shown, f.noReload
	if renderer.StateDir, err = templateStateDir(f.stateDir, os.Getenv, os.Geteuid()); err != nil {
		return usageError{err.Error()}
	}
	if renderer.StateDir == "" && f.stateDir != "none" {
		log.Warn("no directory to save the spellings endpointsBy keeps in (no $HOME): a restart chooses among names that differ only in case again; give --state-dir")
	}
	if renderer.StateDir == rootStateDir {
		renderer.StateDir = rootRunStateDir(log, legacyRootStateDir, rootStateDir, os.Geteuid(), !f.dry && !f.print)
	}
	renderer.Status = render.NewStatus()
	loop := &render.Loop{Renderer: renderer, Source: w}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f.print {
		return runPrint(ctx, log, w, renderer, set, f.onceTimeout, shown)
	}
	if f.once {
		return runOnce(ctx, log, w, loop, set, f.onceTimeout)
	}
	// A daemon: it lives on when its log's reader goes away; with --dry
	// its output is its diffs, and a reader that went away (| head) ends
	// it as it ends any program.
	if !f.dry {
		supervise.SurviveClosedOutput()
	}

	sets := make(chan *render.Set)
	loop.Sets = sets
	rl := render.NewReloader(log, func() (render.Config, error) {
		c, err := f.loadConfig(fs)
		if err == nil && c.secretInFile {
			warnReadableSecret(log, "--config", f.config, configSecretFix)
		}
		if changed := registryChanges(cfg.Registry, c.Registry); err == nil && len(changed) > 0 {
			log.Warn("the registry connection settings changed, and are not applied: restart svcreg template to use them; it goes on with the ones it started with",
				"changed", strings.Join(changed, ", "))
		}
		if err == nil {
			err = signalWithoutExec(cfg.Config, c.Config)
		}
		if changed := startChanges(cfg.Config, c.Config); err == nil && len(changed) > 0 {
			log.Warn("settings taken at the start changed, and are not applied: restart svcreg template to use them; it goes on with the ones it started with",
				"changed", strings.Join(changed, ", "))
		}
		return c.Config, err
	}, sets, set)
	rl.Health, rl.Metrics = health, renderer.Metrics
	var g run.Group
	var ex *render.Exec
	execCode := 0
	if len(cfg.Exec.Command) > 0 {
		if ex, err = newExec(cfg.Exec, log, stdin, stdout, stderr); err != nil {
			return err
		}
		// The command (a load balancer that faces the internet, most
		// often) gets the environment without the registry credentials;
		// as svcreg's user, it could read them in svcreg's own
		// (/proc/PID/environ) or memory. (The check and reload commands
		// are the operator's own, and run briefly.)
		if err := undumpable.Set(); err != nil {
			log.Warn("cannot keep the command from reading svcreg's memory and environment (prctl PR_SET_DUMPABLE)", "err", err)
		}
		defer ex.Close()
		ex.OnHUP = func() { rl.Reload(ctx, "SIGHUP") }
		ex.Installed = rl.Installed
		renderer.Child, loop.Passed = ex, ex.Passed
		// The command's supervisor takes the signals, SIGHUP included.
		g.Add(func() error { execCode = ex.Run(ctx); return errStopped }, func(error) { cancel() })
	} else {
		sigs := notifyStopOrReload()
		defer signal.Stop(sigs)
		g.Add(func() error { return stopOrReload(ctx, log, sigs, func() { rl.Reload(ctx, "SIGHUP") }) }, func(error) { cancel() })
	}
	g.Add(func() error { return w.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return loop.Run(ctx, set) }, func(error) { cancel() })
	g.Add(func() error { return rl.WatchFiles(ctx) }, func(error) { cancel() })
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/healthz", health)
		mux.Handle("/readyz", health.Ready())
		mux.Handle("/metrics", metricsHandler(reg))
		mux.Handle("/", statuspage.Handler(statuspage.Config{Health: health, Status: renderer.Status,
			Registry: cfg.Registry.URL, InUse: client.URL, Account: accountName(cfg.Registry), Logger: log}))
		log.Info("serving the status page, /healthz, /readyz and /metrics", "url", "http://"+ln.Addr().String(), "max_conns", statusConns)
		// Whoever reaches the port (a health probe's network) must not
		// hold the descriptors the renderer needs for its files, commands
		// and registry connections.
		addBoundedServer(&g, log, ln, statuspage.LoopbackOnly(ln.Addr(), mux), statusConns)
	}
	log.Info("svcreg template started", "templates", set.Len(), "registry", registry.PublicURL(cfg.Registry.URL), "dry", f.dry)
	err = g.Run()
	if errors.Is(err, errStopped) {
		if ex != nil {
			return execExit(execCode)
		}
		return nil
	}
	return err
}

// rootStateDir is a renderer's state directory as root when neither
// --state-dir nor $STATE_DIRECTORY says (and the example unit's
// StateDirectory=): one of its own, not legacyRootStateDir, where earlier
// releases kept it, which the examples give the server for its data.
const (
	rootStateDir       = "/var/lib/svcreg-template"
	legacyRootStateDir = "/var/lib/svcreg"
)

// adoptLegacyState copies the spellings files the renderer kept in
// from, as earlier releases did, to to, where it keeps them now, at the
// first start that finds none in to (render.CopyStateFiles): without
// them it would choose among names that differ only in case anew.
func adoptLegacyState(log *slog.Logger, from, to string, euid int) {
	copied, err := render.CopyStateFiles(from, to, euid)
	if err != nil {
		log.Warn("cannot copy the spellings kept before to the state directory: names that differ only in case may be chosen anew", "from", from, "to", to, "err", err)
	}
	if copied > 0 {
		log.Info("copied the spellings endpointsBy kept in the former state directory", "from", from, "to", to, "files", copied)
	}
}

// rootRunStateDir is the state directory of a run whose default one is
// to: a run that writes takes the spellings files of from first
// (adoptLegacyState); one that writes nothing (--print, --dry) reads
// them where they are while to has none, so that it shows what the
// daemon would keep, and copies nothing.
func rootRunStateDir(log *slog.Logger, from, to string, euid int, writes bool) string {
	if writes {
		adoptLegacyState(log, from, to, euid)
		return to
	}
	have, _ := filepath.Glob(filepath.Join(to, "spellings-*.json"))
	old, _ := filepath.Glob(filepath.Join(from, "spellings-*.json"))
	if len(have) == 0 && len(old) > 0 {
		return from
	}
	return to
}

// templateStateDir is the renderer's StateDir for --state-dir flag: the
// flag's, made absolute; else $STATE_DIRECTORY (the first, if systemd
// set several); else rootStateDir for root (euid 0); else
// $XDG_STATE_HOME/svcreg, or ~/.local/state/svcreg. "none", or no home to
// find one in: "".
func templateStateDir(flag string, getenv func(string) string, euid int) (string, error) {
	switch {
	case flag == "none":
		return "", nil
	case flag != "":
		return filepath.Abs(flag)
	}
	if d, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); filepath.IsAbs(d) {
		return d, nil
	}
	if euid == 0 {
		return rootStateDir, nil
	}
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "svcreg"), nil
	}
	if home := getenv("HOME"); filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "svcreg"), nil
	}
	return "", nil
}

// statusConns is how many connections --listen serves at once (see
// addBoundedServer).
const statusConns = 256

// configSecretFix says what to do of a --config file that holds a
// credential and that every local user can read.
const configSecretFix = "its [registry] holds a credential: make it readable by svcreg's user only (chmod o-r), or give the credential in the environment (SVCREG_API_KEY, SVCREG_PASSWORD, SVCREG_TOKEN)"

// loadConfig reads --config (if any), adds the --template flags, applies
// --wait and --listen, and puts the connection flags given over the
// file's [registry].
func (f *templateFlags) loadConfig(fs *flag.FlagSet) (templateConfig, error) {
	// Without a file, the default wait; a file's [wait] replaces it whole
	// (a min without a max then waits at most four times min), and a file
	// without [wait] gets the default from ReadConfigInto.
	c := templateConfig{}
	if f.config == "" {
		c.Wait = render.DefaultWait()
	}
	if f.config != "" {
		if err := render.ReadConfigInto(f.config, &c, &c.Config); err != nil {
			return c, err
		}
		c.secretInFile = c.Registry.APIKey != "" || c.Registry.Password != "" || c.Registry.Token != ""
		// Relative to the file, as its templates are; --ca-cert and
		// SVCREG_CA_CERT are relative to the working directory.
		if ca := c.Registry.CACert; ca != "" && !filepath.IsAbs(ca) {
			c.Registry.CACert = filepath.Join(filepath.Dir(f.config), ca)
		}
	}
	c.Registry = registryflags.Resolve(c.Registry, fs, f.registry)
	for _, t := range f.templates {
		tc, err := render.ParseTemplateFlag(t)
		if err != nil {
			return c, err
		}
		c.Templates = append(c.Templates, tc)
	}
	if f.wait != "" {
		w, err := parseWaitFlag(f.wait)
		if err != nil {
			return c, err
		}
		c.Wait = w
	}
	if isSet(fs, "listen") {
		c.Listen = f.listen
	}
	if err := f.applyExec(&c.Config, func(name string) bool { return isSet(fs, name) }); err != nil {
		return c, err
	}
	if err := c.Normalize(); err != nil {
		if f.config != "" {
			return c, fmt.Errorf("config %s: %w", f.config, err)
		}
		return c, err
	}
	return c, nil
}

// parseWaitFlag parses --wait MIN:MAX (a MIN alone, or a MAX of 0, is MIN
// and four times MIN, as Normalize makes a [wait] max of 0).
func parseWaitFlag(s string) (render.WaitConfig, error) {
	lo, hi, ok := strings.Cut(s, ":")
	if !ok {
		hi = "0s" // four times MIN, as [wait] with min alone, and consul-template's -wait
	}
	var w render.WaitConfig
	for _, d := range []struct {
		to   *render.Duration
		text string
	}{{&w.Min, lo}, {&w.Max, hi}} {
		if err := d.to.UnmarshalText([]byte(d.text)); err != nil {
			return w, fmt.Errorf("--wait %q: give MIN:MAX, two durations such as 100ms:2s (%w)", s, err)
		}
	}
	if w.Max != 0 && w.Max < w.Min { // 0: four times MIN, as [wait]'s max
		return w, fmt.Errorf("--wait %q: MAX (%s) is less than MIN (%s)", s, w.Max.D(), w.Min.D())
	}
	return w, nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// runOnce is --once: sync, one pass, exit with the code of the worst
// failure.
func runOnce(ctx context.Context, log *slog.Logger, w *watcher.Watcher, loop *render.Loop, set *render.Set, timeout time.Duration) error {
	ctx, stop := watchUntilSignal(ctx, w)
	defer stop(nil)
	res, err := loop.RunOnce(ctx, set, timeout)
	if res.Stopped && err == nil {
		err = fmt.Errorf("stopped before the pass went through: %w", context.Cause(ctx))
	}
	if err != nil || res.Worst() != nil {
		// A pass that a signal cut short says so; one that went through
		// (a reload under way runs to its end) is a success.
		if err := interruptedError(ctx); err != nil {
			return err // what the pass did is in the log
		}
	}
	if err != nil {
		// Also a stop by the watcher giving up (refused credentials).
		return syncError(ctx, err, w, stop)
	}
	if worst := res.Worst(); worst != nil {
		code := map[render.Step]int{render.StepRender: exitRender, render.StepCheck: exitCheck,
			render.StepInstall: exitInstall, render.StepReload: exitReload}[worst.Step]
		return exitCodeError{code, worst}
	}
	log.Info("rendered once", "groups_installed", res.Installed)
	return nil
}

// registryChanges names the connection settings that differ between
// running and loaded, by their [registry] keys; the values, secrets among
// them, are not shown.
func registryChanges(running, loaded registry.Config) []string {
	return changedKeys([]keyChange{
		{"url", running.URL != loaded.URL},
		{"auth_url", running.AuthURL != loaded.AuthURL},
		{"region", running.Region != loaded.Region},
		{"tenant", running.Tenant != loaded.Tenant},
		{"username", running.Username != loaded.Username},
		{"api_key", running.APIKey != loaded.APIKey},
		{"password", running.Password != loaded.Password},
		{"token", running.Token != loaded.Token},
		{"ca_cert", running.CACert != loaded.CACert},
		{"max_list_items", running.MaxListItems != loaded.MaxListItems},
	})
}

// startChanges names the settings besides [registry] that the renderer
// takes at its start only (the status page's address, the watcher's
// resync and outage, the [exec] command) and that differ between running
// and loaded, by their keys.
func startChanges(running, loaded render.Config) []string {
	return changedKeys([]keyChange{
		{"listen", running.Listen != loaded.Listen},
		{"resync", running.Resync != loaded.Resync},
		{"outage", running.Outage != loaded.Outage},
		{"[exec] command", !slices.Equal(running.Exec.Command, loaded.Exec.Command)},
		{"[exec] grace_period", running.Exec.GracePeriod != loaded.Exec.GracePeriod},
		{"[exec] start_without_registry", running.Exec.StartWithoutRegistry != loaded.Exec.StartWithoutRegistry},
	})
}

// signalWithoutExec refuses a re-read config (loaded) with a reload_signal
// when the renderer runs no [exec] command (running has none): the
// command is taken at the start only, and every reload of that group
// would fail, with the reload command it replaced gone.
func signalWithoutExec(running, loaded render.Config) error {
	if len(running.Exec.Command) > 0 {
		return nil
	}
	for _, t := range loaded.Templates {
		if t.ReloadSignal != "" {
			return fmt.Errorf("template %s: reload_signal %s needs the [exec] command, which svcreg template starts with only: this one runs none; give reload a command, or restart svcreg template to run [exec]", t.Name(), t.ReloadSignal)
		}
	}
	return nil
}

// keyChange is a setting's key, and whether a reload of the config
// changed it.
type keyChange struct {
	key     string
	differs bool
}

// changedKeys names the keys that differ, in order.
func changedKeys(cs []keyChange) []string {
	var changed []string
	for _, c := range cs {
		if c.differs {
			changed = append(changed, c.key)
		}
	}
	return changed
}

// accountName says who the renderer signs in as, for the status page:
// the username, never a secret.
func accountName(s registry.Config) string {
	switch {
	case s.Username != "":
		return s.Username
	case s.Tenant != "":
		return "a token (tenant " + s.Tenant + ")"
	case s.Token != "":
		return "a token"
	}
	return ""
}
