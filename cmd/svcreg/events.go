package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
)

const eventsDescription = `
Reads the account's events feed: what happened to services and
configuration values, in the order it happened. Connection flags (--url,
--username, --api-key, …) or the SVCREG_* environment variables say which
registry and account.`

func runEvents(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runGroup(ctx, "events", eventsDescription, []subcommand{
		{"list", "list the events from a marker (default: the last hour)", runEventsList},
		{"tail", "follow the events feed live", runEventsTail},
	}, args, stdin, stdout, stderr)
}

// eventType checks the value of --type.
func eventType(t string) (registry.EventType, error) {
	if t == "" || slices.Contains(registry.EventTypes, registry.EventType(t)) {
		return registry.EventType(t), nil
	}
	names := make([]string, len(registry.EventTypes))
	for i, et := range registry.EventTypes {
		names[i] = string(et)
	}
	return "", usagef("--type %q: use one of %s", t, strings.Join(names, ", "))
}

func runEventsList(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("events list", "svcreg events list [--marker ID] [--type TYPE] [--limit N] [flags]", `
Lists the events from --marker on (the event with that id comes first), or
those of the last hour, oldest first, following every page. Each line
shows the event's id (a marker to list or tail from), time, type, the
service or configuration key it is about, and what changed. With
--output json, a JSON array of events as the API shows them.`, stdout)
	marker := f.fs.String("marker", "", "event `id` to start at (inclusive); default: an hour ago")
	typ := f.fs.String("type", "", "list only events of this `type`, e.g. service.join")
	limit := f.fs.Int("limit", 0, "list at most `N` events; 0 for all")
	if err := f.parseNone(args); err != nil {
		return err
	}
	et, err := eventType(*typ)
	if err != nil {
		return err
	}
	if err := checkMarker(*marker); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit %d: give a number of events, or 0 for all", *limit)
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()

	opts := registry.EventListOptions{Marker: *marker, Type: et}
	if *limit > 0 {
		opts.Limit = min(*limit, 1000)
	}
	events := []registry.Event{}
	for ev, err := range c.ListEvents(ctx, opts) {
		if err != nil {
			return err
		}
		events = append(events, ev)
		if len(events) == *limit {
			break
		}
	}
	if f.json() {
		return writeJSON(stdout, events)
	}
	return writeEventTable(stdout, events)
}

// writeEventTable writes a list of events as a table whose columns fit the
// widest cell (a long configuration key included); the tail, which cannot
// wait for the widest, uses fixed widths (eventLine).
func writeEventTable(w io.Writer, events []registry.Event) error {
	tw := newTable(w)
	row(tw, "ID", "TIME", "TYPE", "SUBJECT", "DETAIL")
	for _, ev := range events {
		subject, detail := describeEvent(ev)
		row(tw, printable.Inline(ev.ID), eventTime(ev), cell(string(ev.Type)), cell(subject), detail)
	}
	return tw.Flush()
}

func eventTime(ev registry.Event) string {
	return ev.Timestamp.Local().Format("2006-01-02T15:04:05.000-07:00")
}

func runEventsTail(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newStreamFlags("events tail", "svcreg events tail [--marker ID] [--type TYPE] [--count N] [flags]", `
Follows the events feed live and prints each event as it happens, until
interrupted (Ctrl-C, SIGTERM), once the reader of its output has gone (a
pipe into "head"), or, with --count, after that many events.
Without --marker it starts now and shows only new events; with it, it
starts after the event with that id (the last one you saw), so that a tail
can be resumed. It long-polls the registry and rides out the registry's
restarts, also one under way when it starts (a --url nothing answers at
is waited for, saying so on stderr), and its internal errors (500); a
refusal (credentials it does not take) or a --url whose answers are not
the API's (a web page) ends it, with exit status 1. With --output json,
one JSON object per line.`, stdout)
	marker := f.fs.String("marker", "", "event `id` to follow the feed after; default: now")
	typ := f.fs.String("type", "", "show only events of this `type`, e.g. service.join")
	count := f.fs.Int("count", 0, "exit after `N` events; 0 to follow until interrupted")
	if err := f.parseNone(args); err != nil {
		return err
	}
	et, err := eventType(*typ)
	if err != nil {
		return err
	}
	if err := checkMarker(*marker); err != nil {
		return err
	}
	if *count < 0 {
		return usagef("--count %d: give a number of events, or 0 to follow until interrupted", *count)
	}
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A reader of the output that has gone (a pipe into "head -1") ends
	// the tail as an interrupt does, rather than at the next event.
	ctx, outputGone := context.WithCancel(ctx)
	defer outputGone()
	defer readerGone(stdout, outputGone)()
	// A registry that is down or restarting is waited for; a refusal, or
	// an answer that is not the API's, ends the tail: retrying would not
	// fix it. The feed retries more (a daemon's credentials may be fixed
	// meanwhile); its errors that would not clear stop the tail too.
	ctx, refused := context.WithCancelCause(ctx)
	defer refused(nil)
	onError := func(err error, retryIn time.Duration) {
		if !registryDown(err) {
			refused(tailRefused{err})
			return
		}
		fmt.Fprintf(stderr, "svcreg events tail: %s; retrying in %s\n", printable.Text(describeFault(err).Error()), retryIn.Round(time.Millisecond))
	}
	// ended is the tail's error once ctx has ended: none when interrupted.
	ended := func() error {
		if r, ok := context.Cause(ctx).(tailRefused); ok {
			return r.err
		}
		return nil
	}
	start := *marker
	if start == "" {
		// A registry that takes the connection and does not answer holds
		// the first call up to its minute: say what the tail waits for.
		stderr = &lockedWriter{w: stderr}
		quiet := time.AfterFunc(tailQuietNotice, func() {
			fmt.Fprintf(stderr, "svcreg events tail: no answer from the registry yet (the login, or the list that finds where the feed is now); still waiting\n")
		})
		defer quiet.Stop()
		bo := retry.Backoff{Min: 100 * time.Millisecond, Max: 15 * time.Second}
		for {
			sctx, cancel := context.WithTimeout(ctx, callTimeout)
			start, err = feedMarkerNow(sctx, c)
			cancel()
			quiet.Stop() // an answer, or an error that says what is wrong
			if ctx.Err() != nil {
				return ended()
			}
			if err == nil {
				break
			}
			if !registryDown(err) {
				return err
			}
			wait := bo.Heed(bo.Next(), registry.RetryAfter(err))
			onError(err, wait)
			if retry.Sleep(ctx, wait) != nil {
				return ended()
			}
		}
	}
	fmt.Fprintf(stderr, "svcreg events tail: following the events after %s (interrupt to stop)\n", cmp.Or(printable.Inline(start), "now"))
	w := c.NewFeed(start, registry.WatchOptions{Type: et, OnError: onError})
	if !f.json() {
		fmt.Fprintln(stdout, eventHeader)
	}
	for n := 0; *count == 0 || n < *count; n++ {
		ev, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ended() // interrupted, or refused
			}
			return err
		}
		line := eventLine(ev)
		if f.json() {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			line = string(printable.JSON(b))
		}
		if _, err := fmt.Fprintln(stdout, line); err != nil {
			return err
		}
	}
	return nil
}

// tailQuietNotice is how long a tail from now waits for its first answer
// before it says it is waiting.
const tailQuietNotice = 3 * time.Second

// tailRefused is the cause of the end of a tail that the feed's errors
// ended (see registryDown).
type tailRefused struct{ err error }

func (r tailRefused) Error() string { return r.err.Error() }

// registryDown reports whether err says the registry could not be reached
// or answered that it cannot serve now (500, 502, 503, 504, 429, or the
// account's rate limit), as while it restarts or a proxy before it fails
// (spec §4: the original answered a proxy's errors 500 internalError): not
// a refusal, a certificate not trusted, or an answer that is not the API's.
func registryDown(err error) bool {
	if errors.Is(err, registry.ErrRateLimited) {
		return true
	}
	var e *registry.Error
	if errors.As(err, &e) {
		switch e.StatusCode {
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
			return true
		}
		return false
	}
	var ue *url.Error
	var ca x509.UnknownAuthorityError
	var host x509.HostnameError
	var inv x509.CertificateInvalidError
	return errors.As(err, &ue) && !errors.As(err, &ca) && !errors.As(err, &host) && !errors.As(err, &inv)
}

// checkMarker refuses a --marker that no registry takes (the API's
// markers are event ids, v1 UUIDs) as a usage mistake, naming the flag,
// before anything is sent.
func checkMarker(m string) error {
	if m == "" {
		return nil
	}
	if err := timeuuid.Check(m); err != nil {
		return usagef("--marker %q: not an event id (%v): give one from the ID column of svcreg events list", m, err)
	}
	return nil
}

// feedMarkerNow returns a marker after which the feed holds only what
// happens from now on: the X-Registry-Marker of a services list. A
// registry that does not send it (an original one) gets the id of its
// newest event, or "" if it has none from the last hour.
func feedMarkerNow(ctx context.Context, c *registry.Client) (string, error) {
	page, err := c.ListServicesPage(ctx, registry.ServiceListOptions{Limit: 1})
	if err != nil {
		return "", err
	}
	if page.FeedMarker != "" {
		return page.FeedMarker, nil
	}
	last := ""
	for ev, err := range c.ListEvents(ctx, registry.EventListOptions{Limit: 1000}) {
		if err != nil {
			return "", err
		}
		last = ev.ID
	}
	return last, nil
}

// An event line has columns of fixed width, so that a live tail lines up
// without buffering.
const eventFormat = "%-36s  %-29s  %-26s  %-20s  %s"

var eventHeader = strings.TrimRight(fmt.Sprintf(eventFormat, "ID", "TIME", "TYPE", "SUBJECT", "DETAIL"), " ")

// eventLine shows an event in one line: id, time, type, the service or
// configuration key it is about, and what changed.
func eventLine(ev registry.Event) string {
	subject, detail := describeEvent(ev)
	return strings.TrimRight(fmt.Sprintf(eventFormat, printable.Inline(ev.ID), eventTime(ev), cell(string(ev.Type)), cell(subject), detail), " ")
}

// describeEvent returns what an event is about and what changed.
func describeEvent(ev registry.Event) (subject, detail string) {
	switch ev.Type {
	case registry.ServiceJoin, registry.ServiceUpdate, registry.ServiceRemove, registry.ServiceTimeout:
		s, err := ev.Service()
		if err != nil {
			break
		}
		parts := []string{"timeout=" + strconv.Itoa(s.HeartbeatTimeout)}
		if len(s.Tags) > 0 {
			parts = append(parts, "tags="+printable.Inline(joinTags(s.Tags)))
		}
		if len(s.Metadata) > 0 {
			parts = append(parts, "metadata="+printable.Inline(joinMetadata(s.Metadata)))
		}
		return s.ID, strings.Join(parts, " ")
	case registry.ConfigValueUpdate, registry.ConfigValueRemove:
		ch, err := ev.ConfigChange()
		if err != nil {
			break
		}
		switch {
		case ch.NewValue == nil && ch.OldValue != nil:
			return ch.ID, "was " + termQuote(*ch.OldValue)
		case ch.NewValue == nil:
			return ch.ID, ""
		case ch.OldValue == nil:
			return ch.ID, termQuote(*ch.NewValue)
		}
		return ch.ID, termQuote(*ch.NewValue) + " (was " + termQuote(*ch.OldValue) + ")"
	}
	var b bytes.Buffer
	if json.Compact(&b, ev.Payload) != nil {
		return "", printable.Inline(string(ev.Payload))
	}
	return "", printable.Inline(b.String())
}

// termQuote is registry text quoted for a terminal: Go-quoted, and with
// every rune but ASCII escaped when it holds what printable.Inline quotes (a mark
// that shows as nothing is printable to strconv.Quote: "prod\ufe00" would
// read as "prod").
func termQuote(s string) string {
	if !printable.AllShown(s, printable.ShowsInline) {
		return strconv.QuoteToASCII(s)
	}
	return strconv.Quote(s)
}
