package main

import (
	"context"
	"io"
	"maps"
	"slices"
	"strconv"
)

func runLimits(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("limits", "svcreg limits [flags]", `
Shows the account's limits: how many services and configuration values it
may hold, and its request rate limits with their use. With --output json,
the API's {"resource": …, "rate": …} object. Connection flags (--url,
--username, --api-key, …) or the SVCREG_* environment variables say which
registry and account.`, stdout)
	if err := f.parseNone(args); err != nil {
		return err
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()

	l, err := c.Limits(ctx)
	if err != nil {
		return f.note.describe(err)
	}
	if f.json() {
		return writeJSON(stdout, l)
	}
	tw := newTable(stdout)
	row(tw, "RESOURCE", "LIMIT")
	for _, k := range slices.Sorted(maps.Keys(l.Resource)) {
		row(tw, cell(k), strconv.Itoa(l.Resource[k]))
	}
	row(tw)
	row(tw, "RATE (PATH)", "LIMIT", "USED", "WINDOW")
	for _, k := range slices.Sorted(maps.Keys(l.Rate)) {
		r := l.Rate[k]
		row(tw, cell(k), strconv.Itoa(r.Limit), strconv.Itoa(r.Used), cell(r.Window))
	}
	return tw.Flush()
}
