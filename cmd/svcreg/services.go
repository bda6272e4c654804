package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"

	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/internal/svcflags"
	"github.com/svcreg/svcreg/registry"
)

const servicesDescription = `
Lists, shows, creates, changes and deletes the services of the account.
Connection flags (--url, --username, --api-key, …) or the SVCREG_*
environment variables say which registry and account.`

func runServices(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runGroup(ctx, "services", servicesDescription, []subcommand{
		{"list", "list the services, or those with a tag", runServicesList},
		{"get", "show one service", runServicesGet},
		{"create", "create a service and print its first heartbeat token", runServicesCreate},
		{"update", "change a service's tags, metadata or heartbeat timeout", runServicesUpdate},
		{"delete", "delete a service", runServicesDelete},
	}, args, stdin, stdout, stderr)
}

func runServicesList(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("services list", "svcreg services list [--tag TAG] [flags]", `
Lists every service of the account, ordered by id (all pages), with its
tags, heartbeat timeout, last heartbeat and metadata. With --output json,
a JSON array of services as the API shows them.`, stdout)
	tag := f.fs.String("tag", "", "list only the services carrying this `tag` (exact, case-sensitive)")
	if err := f.parseNone(args); err != nil {
		return err
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()

	services := []registry.Service{}
	for s, err := range c.ListServices(ctx, registry.ServiceListOptions{Tag: *tag}) {
		if err != nil {
			return err
		}
		services = append(services, s)
	}
	if f.json() {
		return writeJSON(stdout, services)
	}
	tw := newTable(stdout)
	row(tw, "ID", "TAGS", "TIMEOUT", "LAST SEEN", "METADATA")
	for _, s := range services {
		row(tw, cell(s.ID), listCell(joinTags(s.Tags)), strconv.Itoa(s.HeartbeatTimeout), formatTime(s.LastSeen), listCell(joinMetadata(s.Metadata)))
	}
	return tw.Flush()
}

func runServicesGet(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("services get", "svcreg services get ID [flags]", `
Shows one service: its tags, heartbeat timeout (seconds), last heartbeat
and metadata, one per line. With --output json, the service as the API
shows it. Exits 1 if there is no such service.`, stdout)
	id, err := f.parseOne(args, "service ID")
	if err != nil {
		return err
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()

	s, err := c.GetService(ctx, id)
	if err != nil {
		return err
	}
	if f.json() {
		return writeJSON(stdout, s)
	}
	return writeServiceTable(stdout, s)
}

// writeServiceTable writes s as services get shows it: a row a field.
func writeServiceTable(w io.Writer, s registry.Service) error {
	tw := newTable(w)
	row(tw, "id", cell(s.ID))
	row(tw, "tags", listCell(joinTags(s.Tags)))
	row(tw, "heartbeat_timeout", strconv.Itoa(s.HeartbeatTimeout))
	row(tw, "last_seen", formatTime(s.LastSeen))
	for _, k := range slices.Sorted(maps.Keys(s.Metadata)) {
		row(tw, "metadata."+listItem(k), cell(s.Metadata[k])) // quoted as in lists: no key shows as another
	}
	return tw.Flush()
}

func runServicesCreate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("services create", "svcreg services create ID --timeout SECONDS [--tags a,b] [--metadata k=v,k2=v2] [flags]", `
Creates a service and prints its first heartbeat token. The registry
times the service out unless it is heartbeated within --timeout seconds:
POST /services/ID/heartbeat with the token (see docs/api.md), or let
'svcreg wrap' register and heartbeat a process. With --output json,
{"token": "…"}.`, stdout)
	timeout := f.fs.Int("timeout", 0, "heartbeat timeout in `seconds` (3..120); required")
	var tags, metadata svcflags.List
	f.fs.Var(&tags, "tags", "comma-separated `tags`; may be repeated")
	f.fs.Var(&metadata, "metadata", "comma-separated `key=value` pairs; may be repeated")
	id, err := f.parseOne(args, "service ID")
	if err != nil {
		return err
	}
	if *timeout == 0 {
		return usagef("missing --timeout: the heartbeat timeout in seconds (3..120)")
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	svcTags, err := tags.Tags()
	if err != nil {
		return usagef("%v", err)
	}
	meta, err := metadata.Metadata()
	if err != nil {
		return usagef("%v", err)
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()

	token, err := c.CreateService(ctx, registry.Service{ID: id, HeartbeatTimeout: *timeout, Tags: svcTags, Metadata: meta})
	if err != nil {
		return err
	}
	if f.json() {
		return writeJSON(stdout, map[string]string{"token": token})
	}
	_, err = fmt.Fprintln(stdout, printable.Inline(token)) // the registry's text
	return err
}

func runServicesUpdate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("services update", "svcreg services update ID [--tags a,b] [--metadata k=v,k2=v2] [--timeout SECONDS] [flags]", `
Changes a service. Only the flags given are sent, and each replaces what
the service had: --tags "" removes every tag, --metadata "" all metadata.
A new --timeout applies from the next heartbeat. Prints nothing.`, stdout)
	timeout := f.fs.Int("timeout", 0, "new heartbeat timeout in `seconds` (3..120)")
	var tags, metadata svcflags.List
	f.fs.Var(&tags, "tags", "comma-separated `tags` that replace the service's; may be repeated")
	f.fs.Var(&metadata, "metadata", "comma-separated `key=value` pairs that replace the service's; may be repeated")
	id, err := f.parseOne(args, "service ID")
	if err != nil {
		return err
	}
	var patch registry.ServicePatch
	if tags.Given() {
		if patch.Tags, err = tags.Tags(); err != nil {
			return usagef("%v", err)
		}
	}
	if metadata.Given() {
		if patch.Metadata, err = metadata.Metadata(); err != nil {
			return usagef("%v", err)
		}
	}
	patch.HeartbeatTimeout = *timeout
	if !tags.Given() && !metadata.Given() && *timeout == 0 {
		return usagef("nothing to change: give --tags, --metadata or --timeout")
	}
	if *timeout != 0 {
		if err := checkTimeout(*timeout); err != nil {
			return err
		}
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	return c.UpdateService(ctx, id, patch)
}

func runServicesDelete(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("services delete", "svcreg services delete ID [flags]", `
Deletes a service; its heartbeat token stops working. Prints nothing.
Exits 1 if there is no such service.`, stdout)
	id, err := f.parseOne(args, "service ID")
	if err != nil {
		return err
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	return c.DeleteService(ctx, id)
}

// checkTimeout checks --timeout against the registry's range before
// anything is sent.
func checkTimeout(seconds int) error {
	if seconds < registry.MinHeartbeatTimeout || seconds > registry.MaxHeartbeatTimeout {
		return usagef("--timeout %d: the heartbeat timeout is %d..%d seconds", seconds, registry.MinHeartbeatTimeout, registry.MaxHeartbeatTimeout)
	}
	return nil
}
