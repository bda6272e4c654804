package render

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/svcreg/svcreg/internal/suggest"
)

// Config is the renderer's configuration, as read from its TOML file or
// built from --template flags. Defaults are applied by Normalize.
type Config struct {
	Wait      WaitConfig       `toml:"wait"`
	Templates []TemplateConfig `toml:"template"`
	// Listen is the address of /healthz, /readyz and /metrics; empty for none.
	Listen string `toml:"listen"`
	// Resync is how often the watcher lists everything again as a safety
	// net; 10m if zero.
	Resync Duration `toml:"resync"`
	// Outage is how long the events feed may fail before the watcher
	// gives it up and lists everything again; 10s if zero.
	Outage Duration `toml:"outage"`
	// FunctionDenylist names template functions no template may call
	// (a template calling one fails to load).
	FunctionDenylist []string `toml:"function_denylist"`
	// Exec runs the load balancer as the renderer's child (see
	// ExecConfig and Exec); none if its Command is empty.
	Exec ExecConfig `toml:"exec"`
}

// WaitConfig debounces renders: a render waits until no change arrived for
// Min, but never longer than Max after the first change. The zero value
// renders at once; a config file without [wait] gets DefaultWait.
type WaitConfig struct {
	Min Duration `toml:"min"`
	Max Duration `toml:"max"`
}

// TemplateConfig is one [[template]].
type TemplateConfig struct {
	// Source is the template file; Destination the file it renders to.
	Source      string `toml:"source"`
	Destination string `toml:"destination"`
	// Perms of the destination, octal ("0644"); the current file's, or 0644.
	Perms string `toml:"perms"`
	// User and Group own the destination (names or ids); unchanged if empty.
	User  string `toml:"user"`
	Group string `toml:"group"`
	// Backup keeps the previous file as Destination + ".bak".
	Backup bool `toml:"backup"`
	// Check is a command run on the staged file(s) before they are
	// installed; a failure keeps the installed files. It is a text/template:
	// {{.Staged}} is the staged file of the group's first changed template,
	// {{.Destination}} that template's destination, and {{range .Files}}
	// gives every template of the group as .Source, .Destination and
	// .Staged (the installed file for a template that did not change).
	Check string `toml:"check"`
	// Reload runs once per pass after the group's files are installed.
	Reload        string   `toml:"reload"`
	ReloadTimeout Duration `toml:"reload_timeout"`
	// ReloadSignal reloads by sending this signal to the [exec] command
	// instead of running Reload.
	ReloadSignal string `toml:"reload_signal"`
	// ReloadGroup names the templates that are checked, installed and
	// reloaded together; a template alone is its own group.
	ReloadGroup string `toml:"reload_group"`
	// MinReloadInterval is the least time between two reloads of the group.
	MinReloadInterval Duration `toml:"min_reload_interval"`
	// MinInstances refuses a render in which a list of services the
	// template reads (services, servicesWithTag, whereMeta, endpoints,
	// endpointsBy, endpointsByExact) holds fewer services, the lists made
	// of groupByMeta's counting as one; the old file stays. A destination that does not exist yet
	// has no old file to keep: the render is installed, with a warning.
	MinInstances int `toml:"min_instances"`
	// CheckTimeout bounds the check command; 30s if zero.
	CheckTimeout Duration `toml:"check_timeout"`

	// Contents is the template itself, instead of a Source file.
	Contents string `toml:"contents"`
	// ErrorOnMissingKey fails the render on a missing map key
	// (.Metadata.nope) instead of rendering an empty string.
	ErrorOnMissingKey bool `toml:"error_on_missing_key"`
	// LeftDelimiter and RightDelimiter replace {{ and }}.
	LeftDelimiter  string `toml:"left_delimiter"`
	RightDelimiter string `toml:"right_delimiter"`
	// CreateDestDirs creates a missing destination directory (0755)
	// instead of failing the install.
	CreateDestDirs bool `toml:"create_dest_dirs"`
	// Splay is the most of a random delay before the group's install and
	// reload, so that many renderers do not reload at the same instant.
	Splay Duration `toml:"splay"`
	// RenderTimeout bounds one execution of the template; 10s if zero.
	RenderTimeout Duration `toml:"render_timeout"`
	// MaxOutput bounds the rendered size; 16 MiB if zero.
	MaxOutput ByteSize `toml:"max_output"`
	// OnRefused is what a service whose data a safe function refused, or a
	// value configAs or metaAs refused, does: "skip" (default) leaves the
	// service out of the render, and uses the default for the value (the
	// service of a metadata value stays), "fail" fails the render.
	OnRefused string `toml:"on_refused"`

	// Runtime names a load balancer runtime API ("haproxy") that applies
	// the changes it can (servers of existing backends) without the
	// reload command; the README's "HAProxy without reloads" says which
	// changes it makes and how it falls back to a reload.
	Runtime string `toml:"runtime"`
	// RuntimeSocket is the runtime API's address.
	RuntimeSocket string `toml:"runtime_socket"`
	// RuntimeDrainTimeout bounds the drain of a removed server.
	RuntimeDrainTimeout Duration `toml:"runtime_drain_timeout"`
	// AllowHostnames lets endpoints and addr take a host name; without it
	// they take IP addresses only. A name nginx cannot resolve fails the
	// whole config (nginx -t, nginx -s reload), so one service would stop
	// every update of the group.
	AllowHostnames bool `toml:"allow_hostnames"`
	// AllowLoopback lets endpoints and addr take a loopback address
	// (127.0.0.0/8, ::1; with AllowHostnames, localhost). Without it they
	// are refused: a service registered there would reach the load
	// balancer's own host, its listeners meant for that host alone (a
	// stats page with admin rights for local clients, the renderer's
	// status page) or the load balancer itself, in a loop.
	AllowLoopback bool `toml:"allow_loopback"`
}

// What on_refused may say.
const (
	RefusedSkip = "skip"
	RefusedFail = "fail"
)

// Name names the template in logs, errors and metrics: its source file,
// or "contents of DESTINATION" for an inline template.
func (t TemplateConfig) Name() string {
	if t.Source != "" {
		return t.Source
	}
	return "contents of " + t.Destination
}

// ByteSize is a size in bytes, written in TOML as a number of bytes or a
// string such as "512KiB", "16MiB" or "1GiB".
type ByteSize int

// UnmarshalTOML implements toml.Unmarshaler.
func (b *ByteSize) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v <= 0 || v > 1<<40 {
			return fmt.Errorf("size %d is out of range", v)
		}
		*b = ByteSize(v)
		return nil
	case string:
		num := strings.TrimRight(v, "KMGiB")
		unit := v[len(num):]
		mult, ok := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if !ok || err != nil || n <= 0 || n > (1<<40)/mult {
			return fmt.Errorf("%q is not a size such as 65536, \"512KiB\", \"16MiB\" or \"1GiB\"", v)
		}
		*b = ByteSize(n * mult)
		return nil
	}
	return fmt.Errorf("%v is not a size such as 65536 or \"16MiB\"", v)
}

// Duration is a time.Duration written as "2s" in TOML.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 500ms, 2s or 1m", b)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults.
const (
	DefaultWaitMin       = 100 * time.Millisecond
	DefaultWaitMax       = 2 * time.Second
	DefaultReloadTimeout = 30 * time.Second
	DefaultCheckTimeout  = 30 * time.Second
	DefaultResync        = 10 * time.Minute
	DefaultOutage        = 10 * time.Second
)

// LoadConfig reads a TOML config file and normalizes it. Relative template
// sources and destinations are taken relative to the file's directory.
func LoadConfig(path string) (Config, error) {
	c, err := ReadConfig(path)
	if err != nil {
		return c, err
	}
	if err := c.Normalize(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ReadConfig reads a TOML config file without normalizing it, for callers
// that add to it first.
func ReadConfig(path string) (Config, error) {
	var c Config
	err := ReadConfigInto(path, &c, &c)
	return c, err
}

// ReadConfigInto reads a TOML config file into file, the schema of the
// program that reads it: a struct that embeds the renderer's Config c
// beside tables of its own (svcreg template's [registry]). A key neither
// knows is an error. Like ReadConfig, it does not normalize c.
func ReadConfigInto(path string, file any, c *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	text := string(data)
	md, err := toml.Decode(text, file)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// The parser's message may quote what it read of the value
			// (an unquoted password): the error is logged, and shown in
			// /healthz, /readyz and on the status page after a re-read.
			// The last key names the secret while its value is read;
			// once a value such as 12hunter has read as the number 12,
			// the error at "hunter" has the table as the last key, and
			// only the line says whose value it is.
			shown, name := pe.LastKey, secretName(pe.LastKey)
			if name == "" {
				if name = secretOnLine(text, pe.Position.Line); name != "" {
					shown = strings.TrimPrefix(shown+"."+name, ".")
				}
			}
			if name != "" {
				return fmt.Errorf("config %s: toml: line %d (key %q): the value does not parse (not shown: it is a secret; write it as a TOML literal string, in single quotes, where a backslash is kept as written: %s = '...')", path, pe.Position.Line, shown, name)
			}
		}
		if strings.Contains(err.Error(), `(last key "template"): incompatible types`) {
			// [template] is one table where a list of them is wanted.
			return fmt.Errorf("config %s: toml: line %d: write each template as [[template]], with two brackets: there may be several", path, tableLine(text, "template"))
		}
		if strings.Contains(err.Error(), `key "template.perms"`) {
			// perms = 0644 is a TOML integer with a leading zero, and
			// perms = 644 an integer where a string is wanted.
			return fmt.Errorf("config %s: %w (write the mode as a string: perms = \"0644\")", path, err)
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	if undec := md.Undecoded(); len(undec) > 0 {
		keys := make([]string, len(undec))
		for i, k := range undec {
			keys[i] = k.String()
			if hint := suggest.DidYouMean(k[len(k)-1], tomlKeys(reflect.TypeOf(file), k[:len(k)-1])); hint != "" {
				keys[i] += " (" + hint + ")"
			}
		}
		return fmt.Errorf("config %s: unknown key(s) %s", path, strings.Join(keys, ", "))
	}
	if !md.IsDefined("wait") {
		c.Wait = DefaultWait()
	}
	dir := filepath.Dir(path)
	for i := range c.Templates {
		t := &c.Templates[i]
		if t.Source != "" && !filepath.IsAbs(t.Source) {
			t.Source = filepath.Join(dir, t.Source)
		}
		if t.Destination != "" && !filepath.IsAbs(t.Destination) {
			t.Destination = filepath.Join(dir, t.Destination)
		}
		// The render, registry data in it, would be the config the next
		// re-read (SIGHUP) runs: its check and reload commands.
		if t.Destination != "" && sameFile(t.Destination, path) {
			return fmt.Errorf("config %s: template %s: the destination is this config file", path, t.Name())
		}
	}
	return nil
}

// sameFile says whether paths a and b name one file: one absolute
// spelling, or (both existing) one inode.
func sameFile(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == ab {
		return true
	}
	ia, err1 := os.Stat(a)
	ib, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ia, ib)
}

// secretName returns the name of the secret a TOML key (dotted) is or is
// below, whose value an error must not quote: [registry] password,
// api_key, token; "" for another key. The decoder takes a key in any case
// (Password), and the key of an error in an inline table or array of
// tables given as the value is below the secret's (password = {a =
// hunter2} fails at registry.password.a).
func secretName(key string) string {
	for part := range strings.SplitSeq(key, ".") {
		switch name := strings.ToLower(strings.Trim(part, `"'`)); name {
		case "password", "api_key", "token":
			return name
		}
	}
	return ""
}

// secretAssignment matches a line that assigns a secret's key: at the
// start of the line, bare, quoted or dotted (registry.password =), or in
// an inline table ({ token = ...).
var secretAssignment = regexp.MustCompile(`(?i)(?:^\s*|[{,]\s*)(?:[\w"'-]+\s*\.\s*)*["']?(password|api_key|token)["']?\s*=`)

// secretOnLine returns the secret's key that line n (1-based) of a config
// file assigns, or "".
func secretOnLine(text string, n int) string {
	lines := strings.Split(text, "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	if m := secretAssignment.FindStringSubmatch(lines[n-1]); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}

// ParseTemplateFlag parses --template "in.tmpl:out.conf[:reload command]".
// The reload command may itself contain colons.
func ParseTemplateFlag(s string) (TemplateConfig, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return TemplateConfig{}, fmt.Errorf("--template %q: want SOURCE:DESTINATION[:RELOAD COMMAND]", s)
	}
	t := TemplateConfig{Source: parts[0], Destination: parts[1]}
	if len(parts) == 3 {
		t.Reload = parts[2]
	}
	return t, nil
}

// DefaultWait is the debounce when none is configured: 100ms:2s.
func DefaultWait() WaitConfig {
	return WaitConfig{Min: Duration(DefaultWaitMin), Max: Duration(DefaultWaitMax)}
}

// Normalize applies defaults and checks the configuration. A [wait] with a
// min and no max waits at most four times min.
func (c *Config) Normalize() error {
	if c.Wait.Max == 0 {
		c.Wait.Max = 4 * c.Wait.Min
	}
	if c.Wait.Max < c.Wait.Min {
		return fmt.Errorf("[wait] max (%s) is less than min (%s)", c.Wait.Max.D(), c.Wait.Min.D())
	}
	if c.Resync == 0 {
		c.Resync = Duration(DefaultResync)
	}
	if c.Outage == 0 {
		c.Outage = Duration(DefaultOutage)
	}
	if len(c.Templates) == 0 {
		return errors.New("no templates: add a [[template]] or give --template SOURCE:DESTINATION")
	}
	files := map[string]int{} // by destination, dirResolved
	for i := range c.Templates {
		t := &c.Templates[i]
		where := fmt.Sprintf("template %d", i+1)
		if (t.Source == "") == (t.Contents == "") || t.Destination == "" {
			return fmt.Errorf("%s: a destination and either source or contents are required", where)
		}
		// A destination has one spelling (conf.d/./a.conf is
		// conf.d/a.conf), so that two templates cannot share a file under
		// two, and a reload of the config that spells it anew finds what
		// the renderer keeps by destination (its last reload, a reload
		// due, the runtime API's state).
		t.Destination = filepath.Clean(t.Destination)
		where = fmt.Sprintf("template %s", t.Name())
		// Nor under two directories that are one (a symbolic link to
		// the other): the two would write the file in turn at every
		// pass, each reloading.
		resolved := dirResolved(t.Destination)
		if j, dup := files[resolved]; dup {
			if c.Templates[j].Destination == t.Destination {
				return fmt.Errorf("%s: destination %s is also template %d's", where, t.Destination, j+1)
			}
			return fmt.Errorf("%s: destination %s is template %d's, %s, through a symbolic link", where, t.Destination, j+1, c.Templates[j].Destination)
		}
		files[resolved] = i
		if t.Perms != "" {
			if _, err := t.FileMode(); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		// A user or group the host does not have fails here, so that a
		// reload of the config keeps the one in use, rather than every
		// install of the new one.
		if _, err := ownerOf(*t); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if t.ReloadGroup == "" {
			t.ReloadGroup = t.Destination
		}
		if t.ReloadTimeout == 0 {
			t.ReloadTimeout = Duration(DefaultReloadTimeout)
		}
		if t.CheckTimeout == 0 {
			t.CheckTimeout = Duration(DefaultCheckTimeout)
		}
		if t.MinInstances < 0 {
			return fmt.Errorf("%s: min_instances must not be negative", where)
		}
		if err := t.normalizeTemplate(); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	if err := checkDestinations(c.Templates, files); err != nil {
		return err
	}
	if err := checkDenylist(c.FunctionDenylist); err != nil {
		return err
	}
	if err := c.normalizeExec(); err != nil {
		return err
	}
	groups, err := groupsOf(c.Templates)
	if err != nil {
		return err
	}
	return checkRuntimes(c.Templates, groups)
}

// dirResolved is path with the links of its directory resolved (the file
// itself may be a link, which an install replaces), or path if the
// directory cannot be resolved (it does not exist yet).
func dirResolved(path string) string {
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return path
	}
	return filepath.Join(dir, filepath.Base(path))
}

// checkDestinations refuses a destination (files: the templates' by
// destination, its directory's links resolved: dirResolved) that is a
// file another template's install writes or reads besides its own: its
// source, which would then run the render, registry data in it, as a
// template; its backup (DEST.bak), which each of its installs would
// write over the file that destination's check passed; or svcreg's files
// beside it (lock, staged, reload-pending).
func checkDestinations(ts []TemplateConfig, files map[string]int) error {
	clash := func(t TemplateConfig, path, what string) error {
		j, ok := files[dirResolved(path)]
		if !ok {
			return nil
		}
		return fmt.Errorf("template %s: destination %s is %s %s", ts[j].Name(), path, what, t.Name())
	}
	for _, t := range ts {
		if t.Source != "" {
			if err := clash(t, filepath.Clean(t.Source), "the source of template"); err != nil {
				return err
			}
		}
		if t.Backup {
			if err := clash(t, t.Destination+".bak", "the backup (backup = true) of template"); err != nil {
				return err
			}
		}
		for _, name := range []string{lockName(t.Destination), stagedName(t.Destination), pendingName(t.Destination)} {
			if err := clash(t, name, "a file svcreg keeps beside the destination of template"); err != nil {
				return err
			}
		}
	}
	return nil
}

// tableLine is the line of text (from 1) that opens the table [name], or 0.
func tableLine(text, name string) int {
	for i, line := range strings.Split(text, "\n") {
		if strings.ReplaceAll(strings.TrimSpace(line), " ", "") == "["+name+"]" {
			return i + 1
		}
	}
	return 0
}

// FileMode parses Perms.
func (t TemplateConfig) FileMode() (os.FileMode, error) {
	v, err := strconv.ParseUint(t.Perms, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("perms %q is not an octal file mode such as \"0644\"", t.Perms)
	}
	if v > 0o777 {
		// setuid, setgid and sticky: no use on a config file, and a mode
		// the file never shows would make every pass install it again.
		return 0, fmt.Errorf("perms %q: only the permission bits, 0000 to 0777, such as \"0644\"", t.Perms)
	}
	return os.FileMode(v), nil
}

// groupSettings are the settings a reload group's templates share.
type groupSettings struct {
	name              string
	check, reload     string
	reloadSignal      string
	reloadTimeout     time.Duration
	checkTimeout      time.Duration
	minReloadInterval time.Duration
	splay             time.Duration
	templates         []int // indexes into Config.Templates
}

// groupsOf gathers templates into reload groups, in order of first
// appearance. Within a group, check, reload and their timeouts must agree
// where they are set.
func groupsOf(ts []TemplateConfig) ([]*groupSettings, error) {
	var out []*groupSettings
	byName := map[string]*groupSettings{}
	for i, t := range ts {
		g := byName[t.ReloadGroup]
		if g == nil {
			g = &groupSettings{name: t.ReloadGroup}
			byName[t.ReloadGroup] = g
			out = append(out, g)
		}
		if err := agree(g.name, "check", &g.check, t.Check); err != nil {
			return nil, err
		}
		if err := agree(g.name, "reload", &g.reload, t.Reload); err != nil {
			return nil, err
		}
		if err := agree(g.name, "reload_signal", &g.reloadSignal, t.ReloadSignal); err != nil {
			return nil, err
		}
		if g.reload != "" && g.reloadSignal != "" {
			return nil, fmt.Errorf("reload group %q has both reload and reload_signal: give one", g.name)
		}
		g.reloadTimeout = max(g.reloadTimeout, t.ReloadTimeout.D())
		g.checkTimeout = max(g.checkTimeout, t.CheckTimeout.D())
		g.minReloadInterval = max(g.minReloadInterval, t.MinReloadInterval.D())
		g.splay = max(g.splay, t.Splay.D())
		g.templates = append(g.templates, i)
	}
	return out, nil
}

// agree sets *dst to val, unless the group already has another value.
func agree(group, key string, dst *string, val string) error {
	if val == "" {
		return nil
	}
	if *dst != "" && *dst != val {
		return fmt.Errorf("templates of reload_group %q disagree on %s: %q and %q", group, key, *dst, val)
	}
	*dst = val
	return nil
}

// normalizeTemplate applies the defaults of the settings that shape how a
// template executes, and checks them.
func (t *TemplateConfig) normalizeTemplate() error {
	if t.RenderTimeout == 0 {
		t.RenderTimeout = Duration(DefaultRenderTimeout)
	}
	if t.MaxOutput == 0 {
		t.MaxOutput = DefaultMaxOutput
	}
	switch t.OnRefused {
	case "":
		t.OnRefused = RefusedSkip
	case RefusedSkip, RefusedFail:
	default:
		return fmt.Errorf("on_refused = %q: want %q or %q", t.OnRefused, RefusedSkip, RefusedFail)
	}
	if (t.LeftDelimiter == "") != (t.RightDelimiter == "") {
		return errors.New("left_delimiter and right_delimiter go together")
	}
	return nil
}

// tomlKeys returns the keys a TOML table at path may hold when it decodes
// into a value of type t: the names of the struct's fields there (their
// toml tags, or their names), those of embedded structs included. None
// for a map's table, whose keys are free, or a path t does not have.
func tomlKeys(t reflect.Type, path []string) []string {
	return tomlKeysOf(t, path, map[reflect.Type]bool{})
}

// tomlKeysOf is tomlKeys; embedding holds the structs walked for this
// table, so that a struct embedded twice, or that embeds itself through a
// pointer, is walked once, as the decoder does.
func tomlKeysOf(t reflect.Type, path []string, embedding map[reflect.Type]bool) []string {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || embedding[t] {
		return nil
	}
	embedding[t] = true
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case name == "-" || !f.IsExported():
			continue
		case f.Anonymous && name == "":
			if len(path) == 0 {
				keys = append(keys, tomlKeysOf(f.Type, nil, embedding)...)
			} else if sub := tomlKeysOf(f.Type, path, embedding); sub != nil {
				return sub
			}
			continue
		case name == "":
			name = f.Name
		}
		if len(path) > 0 && strings.EqualFold(name, path[0]) {
			return tomlKeys(f.Type, path[1:])
		}
		keys = append(keys, name)
	}
	if len(path) > 0 {
		return nil
	}
	return keys
}
