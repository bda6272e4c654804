package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/registry"
)

const configDescription = `
Lists, reads, sets and deletes the account's configuration values. A
namespaced key begins with "/", as in /production/cassandra/listen_ip.
Connection flags (--url, --username, --api-key, …) or the SVCREG_*
environment variables say which registry and account.`

func runConfig(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runGroup(ctx, "config", configDescription, []subcommand{
		{"list", "list the configuration values, or those of a namespace", runConfigList},
		{"get", "print one configuration value", runConfigGet},
		{"set", "create or replace a configuration value", runConfigSet},
		{"delete", "delete a configuration value", runConfigDelete},
	}, args, stdin, stdout, stderr)
}

func runConfigList(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("config list", "svcreg config list [NAMESPACE] [flags]", `
Lists every configuration value, ordered by key (all pages), or those
under NAMESPACE, which starts with /, e.g. /production/cassandra. The
registry matches the namespace as a plain prefix, so
/production/cassandra also holds /production/cassandra2/x. With
--output json, a JSON array of {"id", "value"} objects.`, stdout)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("unexpected argument %q after the namespace", pos[1])
	}
	var opts registry.ConfigListOptions
	if len(pos) == 1 {
		if !strings.HasPrefix(pos[0], "/") {
			// No key is under one: the list would be empty, and say
			// nothing of why.
			return usagef("the namespace %s does not start with /: give /%s", printable.Inline(pos[0]), printable.Inline(pos[0]))
		}
		opts.Namespace = pos[0]
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()

	values := []registry.ConfigValue{}
	for v, err := range c.ListConfig(ctx, opts) {
		if err != nil {
			return err
		}
		values = append(values, v)
	}
	if f.json() {
		return writeJSON(stdout, values)
	}
	tw := newTable(stdout)
	row(tw, "KEY", "VALUE")
	for _, v := range values {
		row(tw, cell(v.ID), cell(v.Value))
	}
	return tw.Flush()
}

func runConfigGet(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("config get", "svcreg config get KEY [flags]", `
Prints one configuration value as it is stored, followed by a newline, so
that $(svcreg config get KEY) is the value. On a terminal, control
characters, escape sequences and bidi overrides in it (anyone who can
write the account's configuration chooses them) are shown as escapes,
its backslashes doubled and a line on standard error saying so; its
lines and tabs stay.
With --output json, {"id", "value"}. Exits 1 if there is no such value.`, stdout)
	key, err := f.parseOne(args, "configuration KEY")
	if err != nil {
		return err
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()

	v, err := c.GetConfig(ctx, key)
	if err != nil {
		return err
	}
	if f.json() {
		return writeJSON(stdout, v)
	}
	value := v.Value
	if isTerminal(stdout) {
		if value = printable.Text(value); value != v.Value {
			fmt.Fprintf(stderr, "svcreg config get: %s holds characters a terminal would act on; shown escaped, with each backslash doubled (piped or with --output json, it is written as stored)\n", cell(key))
		}
	}
	_, err = fmt.Fprintln(stdout, value)
	return err
}

func runConfigSet(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("config set", "svcreg config set KEY VALUE [flags]", `
Creates or replaces a configuration value (1..1024 characters). A VALUE
of "-" reads the value from standard input, without its final newline
(LF or CRLF); over 64 KiB there, it is refused before anything is sent.
Prints nothing.

`+registry.ConfigIDRules, stdout)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	switch len(pos) {
	case 0:
		return usagef("missing configuration KEY and VALUE")
	case 1:
		return usagef("missing VALUE after the key %q (use - to read it from standard input)", pos[0])
	case 2:
	default:
		return usagef("unexpected argument %q after the value; quote a value that holds spaces", pos[2])
	}
	key, value := pos[0], pos[1]
	if err := registry.CheckConfigID(key); err != nil {
		return usagef("%s", err)
	}
	if value == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, maxStdinValue+1))
		if err != nil {
			return fmt.Errorf("read the value from standard input: %w", err)
		}
		if len(data) > maxStdinValue {
			return usagef("the value on standard input is over %d KiB: a configuration value is 1 to 1024 characters", maxStdinValue>>10)
		}
		value = string(data)
		if v, ok := strings.CutSuffix(value, "\n"); ok { // LF or CRLF; a lone CR is the value's
			value = strings.TrimSuffix(v, "\r")
		}
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	return c.SetConfig(ctx, key, value)
}

func runConfigDelete(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newAPIFlags("config delete", "svcreg config delete KEY [flags]", `
Deletes a configuration value. Prints nothing. Exits 1 if there is no
such value.`, stdout)
	key, err := f.parseOne(args, "configuration KEY")
	if err != nil {
		return err
	}
	ctx, c, done, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	return c.DeleteConfig(ctx, key)
}

// maxStdinValue is the most config set reads of a value on standard
// input: far over what the registry takes (1024 characters), so that a
// longer one is the registry's to refuse, and a file given by mistake is
// not read whole.
const maxStdinValue = 64 << 10
