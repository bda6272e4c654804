package wrapper

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/svcreg/svcreg/internal/cliflags"
	"github.com/svcreg/svcreg/internal/registryflags"
	"github.com/svcreg/svcreg/internal/svcflags"
	"github.com/svcreg/svcreg/registry"
)

// Limits of --interval. The heartbeat timeout is three intervals (see
// HeartbeatTimeout), and the registry accepts timeouts of 3..120 s.
const (
	MinInterval = 1 * time.Second
	MaxInterval = 40 * time.Second
)

// HeartbeatTimeout is the heartbeat_timeout, in seconds, the wrapper
// registers for a heartbeat interval: ceil(3 × interval), held to the
// registry's 3..120 s. A heartbeat goes every interval, so the registry
// times the service out only after about three intervals without one; a
// failed heartbeat has two intervals of retries before the deadline.
func HeartbeatTimeout(interval time.Duration) int {
	t := int(math.Ceil(3 * interval.Seconds()))
	return min(max(t, 3), 120)
}

// Config is what the wrapper does, from its command line.
type Config struct {
	// Service is the service to register. ParseArgs derives its
	// HeartbeatTimeout from Interval (HeartbeatTimeout); a Config built
	// otherwise sets it so too.
	Service registry.Service
	// Interval is the time between successful heartbeats.
	Interval time.Duration
	// AbortOnFailure stops the command when the service cannot be kept in
	// the registry, instead of keeping it running (fail open).
	AbortOnFailure bool
	// NoDeregister leaves the service to time out when the command exits,
	// instead of deleting it at once.
	NoDeregister bool
	// NoParentDeathSignal lets the command outlive a wrapper that is
	// killed outright (SIGKILL) instead of being killed with it (Linux).
	NoParentDeathSignal bool
	// KeepLeftovers lets the processes the command left running (its
	// orphans, re-parented to the wrapper) run on when it exits, instead
	// of stopping them (SIGTERM, SIGKILL after GracePeriod; Linux).
	KeepLeftovers bool
	// PassCredentials gives the command the wrapper's SVCREG_TOKEN,
	// SVCREG_API_KEY and SVCREG_PASSWORD, and the registry URLs' user
	// information, which it does not get otherwise.
	PassCredentials bool
	// GracePeriod is how long the command has after SIGTERM before it is
	// killed, and after a first SIGINT/SIGTERM before a second one kills it;
	// and the processes the command left running, after theirs.
	GracePeriod time.Duration
	// Command is the program to run and its arguments.
	Command []string
	// Registry says how to reach the registry.
	Registry registry.Config
	// LogFormat (text or json) and LogLevel configure the wrapper's logs.
	LogFormat, LogLevel string
}

// UsageError is a mistake on the command line. Nothing has been done when
// ParseArgs returns one; the wrapper exits with ExitUsage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{fmt.Sprintf(format, args...)}
}

const description = `
Registers a service in the Service Registry, runs COMMAND with its arguments
(stdin, stdout, stderr and the environment passed through, plus
SVCREG_SERVICE_ID, but without the wrapper's credentials unless
--pass-credentials), heartbeats the service while COMMAND lives, and deletes
it when COMMAND exits. Exits with COMMAND's exit code, or 128+N when a signal
N killed it.

The heartbeat timeout registered is ceil(3 x --interval) seconds: the
registry times the service out only after about three missed heartbeats.

Signals (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, ...)
are passed on to COMMAND; a second SIGINT or SIGTERM after --grace-period
kills it. While the wrapper is a terminal's foreground job (not PID 1),
SIGINT and SIGWINCH are not passed on: the terminal sent them to COMMAND
too (Ctrl-C, a new window size). Orphaned descendants of COMMAND are reaped. On Linux, if the
wrapper itself is killed with SIGKILL, the kernel kills COMMAND too
(parent-death signal), unless --no-parent-death-signal; and once COMMAND
has exited, the processes it left running (a script's children that its
SIGTERM did not reach) get SIGTERM, then SIGKILL after --grace-period,
unless --keep-leftovers.

If the registry cannot be reached or refuses the service, COMMAND keeps
running and the wrapper keeps trying (fail open); with --abort-on-failure it
stops COMMAND instead (SIGTERM, then SIGKILL after --grace-period) once the
service has gone one heartbeat timeout without being registered or
heartbeated, and exits with 69. COMMAND starts once the first registration
has succeeded or failed, or has had no answer (the login at the identity
endpoint included) for a quarter of the heartbeat timeout (0.5 to 10 s):
the log then names the request without an answer, and the wrapper goes on
waiting for it (with --abort-on-failure, COMMAND waits for the answer, so
that a refusal keeps it from starting).

Exit codes: COMMAND's; 2 usage; 69 aborted (--abort-on-failure);
126 COMMAND cannot be run; 127 COMMAND not found; 1 other errors.`

// ParseArgs parses the wrapper's command line (the arguments after the
// program's name). prog names the program in the usage text. --help prints
// the usage to help (the wrapper's stdout) once and returns flag.ErrHelp;
// mistakes are *UsageError.
func ParseArgs(prog string, args []string, help io.Writer) (Config, error) {
	cfg := Config{Interval: 10 * time.Second}
	var tags, metadata svcflags.List
	fs := cliflags.New(prog)
	usage := func() {
		fmt.Fprintf(help, "Usage:\n  %s --id=ID [--tags=a,b] [--metadata=k=v,...] [--interval=SECONDS] [--abort-on-failure] [flags] [--] COMMAND [ARGS...]\n\n", prog)
		fmt.Fprintf(help, "%s\n\nFlags:\n", strings.TrimSpace(description))
		cliflags.Print(help, fs, cliflags.Listing{})
	}
	fs.StringVar(&cfg.Service.ID, "id", "", "service `id` to register (3..65 characters of a-z A-Z 0-9 _ . -)")
	fs.Var(&tags, "tags", "comma separated `list` of tags (repeatable)")
	fs.Var(&metadata, "metadata", "comma separated `list` of key=value pairs (repeatable)")
	fs.Var((*secondsFlag)(&cfg.Interval), "interval", fmt.Sprintf("heartbeat `interval`: seconds (5, 2.5) or a duration (5s); %v..%v", MinInterval, MaxInterval))
	fs.BoolVar(&cfg.AbortOnFailure, "abort-on-failure", false, "stop COMMAND and exit 69 when the service cannot be kept in the registry")
	fs.BoolVar(&cfg.NoDeregister, "no-deregister", false, "when COMMAND exits, let the service time out instead of deleting it")
	fs.BoolVar(&cfg.KeepLeftovers, "keep-leftovers", false, "let the processes COMMAND left running run on when it exits\n(by default, on Linux, they get SIGTERM, then SIGKILL after --grace-period)")
	fs.BoolVar(&cfg.NoParentDeathSignal, "no-parent-death-signal", false, "let COMMAND keep running if the wrapper is killed with SIGKILL\n(by default, on Linux, the kernel then kills COMMAND too)")
	fs.BoolVar(&cfg.PassCredentials, "pass-credentials", false, "give COMMAND the wrapper's SVCREG_TOKEN, SVCREG_API_KEY and SVCREG_PASSWORD\nand the user information of SVCREG_URL and SVCREG_AUTH_URL (by default it gets\nnone of them: whoever controls the service would control the account)")
	fs.DurationVar(&cfg.GracePeriod, "grace-period", 10*time.Second, "how long after a SIGINT or SIGTERM passed on to COMMAND a second one\nkills it (SIGKILL); with --abort-on-failure, how long COMMAND has after the\nwrapper's own SIGTERM before SIGKILL; and the processes COMMAND left running,\nafter theirs")
	registryflags.Register(fs, &cfg.Registry)
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log `level`: debug, info, warn or error")

	// The first argument that is not a flag starts the command.
	command, err := cliflags.Parse(fs, args, false)
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return Config{}, err
	}
	if err != nil {
		return Config{}, &UsageError{err.Error()}
	}
	cfg.Command = command
	cfg.Registry = registryflags.Resolve(registry.Config{}, fs, cfg.Registry)
	if cfg.Service.Tags, err = tags.Tags(); err != nil {
		return Config{}, &UsageError{err.Error()}
	}
	if cfg.Service.Metadata, err = metadata.Metadata(); err != nil {
		return Config{}, &UsageError{err.Error()}
	}
	if err := checkID(cfg.Service.ID); err != nil {
		return Config{}, err
	}
	if cfg.Interval < MinInterval || cfg.Interval > MaxInterval {
		return Config{}, usagef("--interval %v is out of range: give %v..%v (the heartbeat timeout, 3 intervals, must stay within the registry's 3..120 s)", cfg.Interval, MinInterval, MaxInterval)
	}
	cfg.Service.HeartbeatTimeout = HeartbeatTimeout(cfg.Interval)
	if n := registry.CreateServiceBodySize(cfg.Service); n >= registry.MaxRequestBody {
		return Config{}, usagef("--tags and --metadata make a registration of %d bytes, and the registry refuses one of %d bytes or more: shorten them", n, registry.MaxRequestBody)
	}
	if cfg.GracePeriod <= 0 {
		return Config{}, usagef("--grace-period must be positive")
	}
	if _, err := newLogger(io.Discard, cfg.LogFormat, cfg.LogLevel, ""); err != nil {
		return Config{}, err
	}
	if len(cfg.Command) == 0 {
		return Config{}, usagef("no command to run: give it after the flags, e.g. %s --id=web1 -- python3 -m http.server", prog)
	}
	return cfg, nil
}

// secondsFlag is a duration given in seconds ("5", "2.5") or as a Go
// duration ("5s", "1m"): the original wrapper took seconds.
type secondsFlag time.Duration

func (s *secondsFlag) String() string { return time.Duration(*s).String() }

func (s *secondsFlag) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e6 {
			return errors.New("not a number of seconds")
		}
		*s = secondsFlag(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("give seconds (5) or a duration (5s)")
	}
	*s = secondsFlag(d)
	return nil
}

// checkID applies the registry's rule for service ids (docs/api.md,
// validation rules), so that a bad id is a usage error and not a
// registration that fails forever.
func checkID(id string) error {
	if id == "" {
		return usagef("--id is required: the service id to register")
	}
	if len(id) < 3 || len(id) > 65 {
		return usagef("--id %q: a service id has 3..65 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return usagef("--id %q: a service id holds only a-z A-Z 0-9 _ . -", id)
		}
	}
	return nil
}
