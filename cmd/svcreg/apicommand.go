package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/svcreg/svcreg/internal/cliflags"
	"github.com/svcreg/svcreg/internal/registryflags"
	"github.com/svcreg/svcreg/internal/suggest"
	"github.com/svcreg/svcreg/registry"
)

// The API commands (services, config, events, limits) share what is in
// this file: subcommand dispatch, flag parsing that lets flags follow the
// positional arguments, the connection and --output flags, and turning the
// registry's faults into one-line messages.

// callTimeout bounds a one-shot API command unless --max-time says
// otherwise, so that a registry that stops answering does not hang a
// deploy script. In events tail it bounds each try to find the feed's end.
const callTimeout = time.Minute

// callTimeoutError is the cause of a one-shot command's deadline: the
// registry (or its identity endpoint) did not answer within --max-time.
// It matches context.DeadlineExceeded.
type callTimeoutError struct{ limit time.Duration }

func (e callTimeoutError) Error() string {
	return fmt.Sprintf("no answer within %s (--max-time)", e.limit)
}

func (callTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// subcommand is one subcommand of a group such as "services".
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// runGroup runs the subcommand args[0] of group. It reports the
// subcommand's error itself, so that the message names the subcommand
// ("svcreg services get: …"), and returns an exitCodeError that carries
// only the exit code.
func runGroup(ctx context.Context, group, description string, subs []subcommand, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	// Help asked for goes to stdout; help after a mistake to stderr.
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage:\n  svcreg %s <subcommand> [arguments] [flags]\n\n%s\n\nSubcommands:\n", group, strings.TrimSpace(description))
		for _, s := range subs {
			fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nRun 'svcreg %s <subcommand> --help' for a subcommand's arguments and flags.\n", group)
	}
	if len(args) == 0 {
		usage(stderr)
		return exitCodeError{code: exitUsage}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	for _, s := range subs {
		if s.name != args[0] {
			continue
		}
		note := &connNote{}
		err := s.run(context.WithValue(ctx, connNoteKey{}, note), args[1:], stdin, stdout, stderr)
		if code := reportError(stderr, "svcreg "+group+" "+s.name, note.describe(err)); code != exitOK {
			return exitCodeError{code: code}
		}
		return nil
	}
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	msg := fmt.Sprintf("unknown subcommand %q: ", args[0])
	if hint := suggest.DidYouMean(args[0], names); hint != "" {
		msg += hint + " "
	}
	return usagef("%suse one of %s", msg, strings.Join(names, ", "))
}

// outputFormat is the value of --output: text (tables) or json.
type outputFormat string

func (o *outputFormat) String() string { return string(*o) }

func (o *outputFormat) Set(v string) error {
	switch v {
	case "text", "json":
		*o = outputFormat(v)
		return nil
	}
	return errors.New("use text or json")
}

// apiFlags are the flags of an API subcommand: its own, --output and the
// connection settings.
type apiFlags struct {
	fs     *flag.FlagSet
	conn   registry.Config
	output outputFormat
	// maxTime bounds a one-shot command (connect); 0 for no bound.
	maxTime time.Duration
	// connNames are the connection flags, listed apart in --help.
	connNames map[string]bool
	usage     func()
	// note says how client connected, for the command's error message.
	note connNote
}

// connNote is what an API command's error message needs to know of how it
// connected: client fills it in, and the one in the context runGroup gives
// its subcommand.
type connNote struct {
	// tokenTenant: a static token (--token, SVCREG_TOKEN) with a tenant
	// given (--tenant, SVCREG_TENANT).
	tokenTenant bool
}

type connNoteKey struct{}

// describe is describeFault, and a 401 to a static token of a tenant given
// adds that the tenant may be wrong: the registry's fault says only that
// the token is invalid, though it may be valid for its own tenant.
func (n *connNote) describe(err error) error {
	err = describeFault(err)
	var e *registry.Error
	if n.tokenTenant && errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized && !e.Identity {
		return faultError{msg: err.Error() + "; a token is valid for its own tenant only: is --tenant (or SVCREG_TENANT) the token's?", err: err}
	}
	return err
}

// newAPIFlags returns the flag set of a one-shot API subcommand, which
// has --max-time. Add the subcommand's own flags to fs, then call parse.
// --help prints the usage to help (stdout).
func newAPIFlags(name, synopsis, description string, help io.Writer) *apiFlags {
	a := newStreamFlags(name, synopsis, description, help)
	a.fs.DurationVar(&a.maxTime, "max-time", callTimeout, "give up if the registry has not answered within this `duration` (e.g. 10s, 2m;\n0 waits as long as it takes, but a login still gives up after 30s)")
	return a
}

// newStreamFlags returns the flag set of an API subcommand that runs
// until interrupted (events tail): newAPIFlags' without --max-time.
func newStreamFlags(name, synopsis, description string, help io.Writer) *apiFlags {
	a := &apiFlags{fs: cliflags.New(name), output: "text", connNames: map[string]bool{}}
	registryflags.Register(a.fs, &a.conn)
	a.fs.VisitAll(func(f *flag.Flag) { a.connNames[f.Name] = true })
	a.fs.Var(&a.output, "output", "output `format`: text (tables) or json (the API's shapes)")
	a.fs.Var(&a.output, "o", "short for --output")
	a.usage = func() {
		fmt.Fprintf(help, "Usage:\n  %s\n\n%s\n\nFlags:\n", synopsis, strings.TrimSpace(description))
		cliflags.Print(help, a.fs, cliflags.Listing{
			Only:  func(f *flag.Flag) bool { return !a.connNames[f.Name] },
			Short: map[string]string{"output": "o"},
		})
		// The connection flags' defaults come from the environment and may
		// be secret, so they are not shown.
		fmt.Fprintf(help, "\nConnection flags (each falls back to the environment variable named):\n")
		cliflags.Print(help, a.fs, cliflags.Listing{Only: func(f *flag.Flag) bool { return a.connNames[f.Name] }, NoDefaults: true})
	}
	return a
}

// parse parses args, in which flags may come before, between and after
// the positional arguments; "--" ends the flags. It returns the
// positional arguments.
func (a *apiFlags) parse(args []string) ([]string, error) {
	pos, err := cliflags.Parse(a.fs, args, true)
	if errors.Is(err, flag.ErrHelp) {
		a.usage()
		return nil, err
	}
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if a.maxTime < 0 {
		return nil, usagef("--max-time %s: give how long to wait, or 0 to wait as long as it takes", a.maxTime)
	}
	return pos, nil
}

// client builds the registry client from the connection settings. A
// missing or contradictory setting is a usage error. It notes how it
// connects in a.note, and in the connNote of ctx if it has one.
func (a *apiFlags) client(ctx context.Context) (*registry.Client, error) {
	cfg := registryflags.Resolve(registry.Config{}, a.fs, a.conn)
	c, err := registryflags.NewClient(cfg)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	a.note = connNote{tokenTenant: cfg.Token != "" && cfg.Tenant != ""}
	if n, ok := ctx.Value(connNoteKey{}).(*connNote); ok {
		*n = a.note
	}
	return c, nil
}

// connect returns a client and ctx bounded by --max-time, for a one-shot
// command; call done when finished. The deadline's cause, which the
// client's errors carry, is a callTimeoutError.
func (a *apiFlags) connect(ctx context.Context) (context.Context, *registry.Client, func(), error) {
	c, err := a.client(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	cancel := context.CancelFunc(func() {})
	if a.maxTime > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, a.maxTime, callTimeoutError{a.maxTime})
	}
	return ctx, c, func() { cancel(); c.Close() }, nil
}

// json reports whether --output json was asked for.
func (a *apiFlags) json() bool { return a.output == "json" }

// parseNone parses args of a subcommand that takes no positional argument.
func (a *apiFlags) parseNone(args []string) error {
	pos, err := a.parse(args)
	if err != nil {
		return err
	}
	return noArgs(pos)
}

// parseOne parses args of a subcommand that takes one positional argument,
// named what in messages, and returns it.
func (a *apiFlags) parseOne(args []string, what string) (string, error) {
	pos, err := a.parse(args)
	if err != nil {
		return "", err
	}
	return oneArg(pos, what)
}

// noArgs checks that no positional argument was given.
func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// oneArg returns the single positional argument, named what in messages.
func oneArg(args []string, what string) (string, error) {
	switch {
	case len(args) == 0:
		return "", usagef("missing %s", what)
	case len(args) > 1:
		return "", usagef("unexpected argument %q after the %s", args[1], what)
	}
	return args[0], nil
}

// mayHaveBeenMade ends the message of a change whose outcome is unknown.
const mayHaveBeenMade = "the change may have been made: look before you repeat it"

// faultError is a registry fault told in one line; it wraps the client's
// error, and so matches what that matches (registry.ErrOutcomeUnknown
// among them).
type faultError struct {
	msg string
	err error
}

func (e faultError) Error() string { return e.msg }
func (e faultError) Unwrap() error { return e.err }

// describeFault turns a registry fault into an error that says what the
// registry said, in one line: `Object "Service" with key "nope" does not
// exist` rather than the method, URL and fault type. It still matches the
// registry's sentinel errors, and says when a change may have been made
// though the registry failed. A certificate of a CA the client does not
// trust gets a hint at --ca-cert; other errors are returned as they are,
// among them that of a call every node of several failed, which names
// each node with its failure (one node's fault would hide the others).
func describeFault(err error) error {
	if errors.As(err, new(x509.UnknownAuthorityError)) {
		return fmt.Errorf("%w (if a private CA issued the registry's certificate, give its PEM file with --ca-cert or SVCREG_CA_CERT)", err)
	}
	var e *registry.Error
	if errors.Is(err, registry.ErrAllNodesFailed) {
		return err
	}
	if !errors.As(err, &e) {
		if errors.Is(err, registry.ErrOutcomeUnknown) { // sent, and no answer
			return fmt.Errorf("%w; %s", err, mayHaveBeenMade)
		}
		return err
	}
	// The registry's text, cut and Go-quoted if it holds a newline or
	// anything else that does not print: the message is one line of
	// svcreg's own, of a bounded length.
	details, _ := e.Details.(string)
	details = registry.ShownText(details)
	msg := registry.ShownText(e.Message)
	switch {
	case e.StatusCode >= 500:
		msg = fmt.Sprintf("the registry failed: %d %s", e.StatusCode, cmp.Or(msg, http.StatusText(e.StatusCode)))
		if e.TxnID != "" {
			msg += " (txnId " + registry.ShownText(e.TxnID) + ")"
		}
	case e.Type == registry.FaultNotFound && details != "":
		msg = details // "object does not exist" says less
	case e.StatusCode == http.StatusNotFound, e.StatusCode == http.StatusMethodNotAllowed,
		e.StatusCode == http.StatusBadRequest && e.Type == "":
		// A path the registry does not serve, or answers it never gives
		// (no 405; its 400s are faults): another server, such as a plain
		// HTTP request to an HTTPS port.
		hint := "is --url the API's base URL, ending in /v1.0?"
		if e.Identity {
			hint = "is the identity endpoint right (--auth-url, ending in /v2.0; without it, --url's)?"
		}
		msg = fmt.Sprintf("%s %s: %s; %s", e.Method, e.URL, cmp.Or(msg, fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))), hint)
	case e.StatusCode == http.StatusUnauthorized:
		msg = "unauthorized: " + cmp.Or(details, msg, http.StatusText(e.StatusCode))
	default:
		msg = cmp.Or(msg, fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode)))
		if details != "" && details != msg {
			msg += ": " + details
		}
	}
	if e.RetryAfter > 0 {
		// A rate limit says how long: "retry later" alone does not.
		// Whole seconds, rounded up: a date less than half a second
		// ahead is not "0s". A date so far ahead that the wait is near
		// the largest Duration is not rounded up past it (to a negative
		// one).
		wait := e.RetryAfter.Truncate(time.Second)
		if wait < e.RetryAfter && wait <= math.MaxInt64-time.Second {
			wait += time.Second
		}
		msg += fmt.Sprintf(" (the registry asks to wait %v)", wait)
	}
	if errors.Is(err, registry.ErrOutcomeUnknown) {
		msg += "; " + mayHaveBeenMade
	}
	if errors.Is(err, registry.ErrMarkerExpired) {
		// The registry's own words are for the API's users.
		msg += " (--marker is older than the events the registry keeps: give a newer one, or none to follow from now)"
	}
	return faultError{msg: msg, err: err}
}
