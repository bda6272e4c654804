package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/svcreg/svcreg/internal/cliflags"
	"github.com/svcreg/svcreg/internal/logging"
	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/internal/suggest"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise
// it comes from the module's build information.
var version = ""

// command is one subcommand. run gets the arguments after the command's name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"server", "run the Service Registry API server", runServer},
		{"template", "render config files from the registry and reload on change", runTemplate},
		{"wrap", "run a command as a service: register, heartbeat, deregister on exit", runWrap},
		{"services", "list, show, create, update and delete services", runServices},
		{"config", "list, get, set and delete configuration values", runConfig},
		{"events", "list or follow the events feed", runEvents},
		{"limits", "show the account's limits", runLimits},
		{"demo", "show the renderer at work on an embedded registry (the quick start)", runDemo},
		{"version", "print the version", runVersion},
	}
}

// Exit codes shared by every command.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError is a mistake on the command line; it exits with exitUsage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError carries a command's own exit code.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitCodeError) Unwrap() error { return e.err }

// Main runs the svcreg command line and returns the exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printMainUsage(stderr)
		return exitUsage
	}
	if args[0] == "help" && len(args) > 1 {
		// svcreg help services get: svcreg services get --help. Only a
		// command and a subcommand: nothing else may reach the command,
		// which would run it (svcreg help wrap --id x cmd).
		if len(args) > 3 || slices.ContainsFunc(args[1:], func(a string) bool { return strings.HasPrefix(a, "-") }) {
			fmt.Fprintf(stderr, "svcreg help: give a command and, for a group, a subcommand (svcreg help services get)\n")
			return exitUsage
		}
		return Main(ctx, append(slices.Clone(args[1:]), "--help"), stdin, stdout, stderr)
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		printMainUsage(stdout)
		return exitOK
	}
	if (args[0] == "--version" || args[0] == "-version") && len(args) == 1 {
		args = []string{"version"}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		return reportError(stderr, "svcreg "+c.name, err)
	}
	names := make([]string, 0, len(commands()))
	for _, c := range commands() {
		names = append(names, c.name)
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if hint := suggest.DidYouMean(args[0], names); hint != "" {
		msg += "; " + hint
	}
	fmt.Fprintf(stderr, "svcreg: %s\n\n", msg)
	printMainUsage(stderr)
	return exitUsage
}

// reportError prints err (if any) and returns the exit code for it.
func reportError(stderr io.Writer, prefix string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", prefix, ue.msg, prefix)
		return exitUsage
	}
	var ce exitCodeError
	if errors.As(err, &ce) {
		if ce.err != nil {
			fmt.Fprintf(stderr, "%s: %s\n", prefix, printable.Text(ce.err.Error()))
		}
		return ce.code
	}
	// A registry's fault message is its own text.
	fmt.Fprintf(stderr, "%s: %s\n", prefix, printable.Text(err.Error()))
	return exitError
}

func printMainUsage(w io.Writer) {
	fmt.Fprintf(w, "svcreg — Service Registry toolkit\n\nUsage:\n  svcreg <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'svcreg <command> --help' (or 'svcreg help <command> [<subcommand>]') for a command's flags;\n'svcreg --version' is 'svcreg version'.\n")
}

// newFlagSet returns the flag set of a command that takes flags only.
// --help prints the usage to help (stdout: help asked for is the
// command's output).
func newFlagSet(name, synopsis, description string, help io.Writer) *flag.FlagSet {
	fs := cliflags.New(name)
	fs.Usage = func() {
		fmt.Fprintf(help, "Usage:\n  %s\n\n", synopsis)
		if description != "" {
			fmt.Fprintf(help, "%s\n\n", strings.TrimSpace(description))
		}
		fmt.Fprintf(help, "Flags:\n")
		cliflags.Print(help, fs, cliflags.Listing{})
	}
	return fs
}

// parseFlags parses args, which hold flags only. --help prints the usage
// and returns flag.ErrHelp; another mistake is a usage error naming it,
// without the whole usage text.
func parseFlags(fs *flag.FlagSet, args []string) error {
	pos, err := cliflags.Parse(fs, args, false)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	if err != nil {
		return usageError{err.Error()}
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return nil
}

// newLogger builds the logger for --log-format and --log-level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	log, err := logging.New(w, format, level)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return log, nil
}

// versionString is svcreg's version: the one set at link time, else the
// module's as go build records it (a tag, or a pseudo-version naming the
// commit of the checkout, "+dirty" for a tree with changes; "(devel)"
// where it records none, as with -buildvcs=false).
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func runVersion(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlagSet("version", "svcreg version", "Prints svcreg's version.", stdout), args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "svcreg %s\n", versionString())
	return nil
}
