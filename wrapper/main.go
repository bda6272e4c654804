// Package wrapper runs a long-running command as a service in the Service
// Registry: it registers the service, supervises the command (signals
// passed on, orphans reaped, exit status passed back), heartbeats the
// service while the command lives and deletes it when the command exits.
// It is the shared core of service-registry-wrapper and svcreg wrap.
package wrapper

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/svcreg/svcreg/internal/logging"
	"github.com/svcreg/svcreg/internal/registryflags"
	"github.com/svcreg/svcreg/internal/supervise"
	"github.com/svcreg/svcreg/registry"
)

// Exit codes of the wrapper itself. Otherwise it exits with the command's
// exit code, or 128+N when signal N killed the command.
const (
	// ExitError: the wrapper failed for another reason.
	ExitError = 1
	// ExitUsage: a mistake on the command line; nothing was registered or
	// run.
	ExitUsage = 2
	// ExitAborted: with --abort-on-failure, the service could not be kept
	// in the registry and the command was stopped (EX_UNAVAILABLE).
	ExitAborted = 69
	// ExitCannotRun: the command was found but could not be started.
	ExitCannotRun = supervise.ExitCannotRun
	// ExitNotFound: the command was not found.
	ExitNotFound = supervise.ExitNotFound
)

// Main runs the wrapper's command line (args after the program's name) and
// returns the exit status. prog names the program in messages. Like Run,
// it owns the process's children and signals.
func Main(ctx context.Context, prog string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	usage := func(err error) int {
		fmt.Fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", prog, err, prog)
		return ExitUsage
	}
	cfg, err := ParseArgs(prog, args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return usage(err)
	}
	rc := cfg.Registry
	if err := registryflags.Check(rc); err != nil {
		return usage(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxResponseHeaderBytes = registry.MaxResponseHeaderBytes
	if rc.CACert != "" {
		// The client is ours, so the CAs go to its transport.
		roots, err := registry.LoadCACert(rc.CACert)
		if err != nil {
			return usage(err)
		}
		if transport.TLSClientConfig == nil {
			transport.TLSClientConfig = &tls.Config{}
		}
		transport.TLSClientConfig.RootCAs = roots
		rc.CACert = ""
	}
	log, err := newLogger(stderr, cfg.LogFormat, cfg.LogLevel, prog)
	if err != nil {
		return usage(err)
	}
	log = log.With("service", cfg.Service.ID)
	// No client-wide timeout: each request is bounded by its own attempt
	// (a registration's 30 s, a heartbeat's up to half the heartbeat
	// timeout, the deregistration's 5 s), as in svcreg wrap; one of 10 s
	// cut a slow registry's answers that those bounds wait for. The
	// command waits for the first registration's for less (firstWait).
	rc.HTTPClient = &http.Client{Transport: transport}
	rc.OnFailover = registryflags.LogFailover(log)
	client, err := registry.New(rc)
	if err != nil {
		return usage(err)
	}
	defer transport.CloseIdleConnections()
	return Run(ctx, cfg, Deps{Client: client, Logger: log, Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// newLogger builds the wrapper's logger for --log-format and --log-level.
// Every record carries prog=<prog>, so that the wrapper's lines stand out
// from the command's output on the same stderr.
func newLogger(w io.Writer, format, level, prog string) (*slog.Logger, error) {
	log, err := logging.New(w, format, level)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return log.With("prog", prog), nil
}
