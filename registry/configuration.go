package registry

import (
	"context"
	"iter"
	"strings"
)

// ConfigListOptions select the configuration values of a list.
type ConfigListOptions struct {
	// Namespace, if set, keeps only the values under it, e.g.
	// "/production/cassandra" (leading and trailing slashes are added as
	// needed). The registry matches it as a plain string prefix, so
	// "/production/cassandra" also holds "/production/cassandra2/x"
	// (spec §7.8).
	Namespace string
	// Marker is the id to start at (inclusive); empty for the beginning.
	Marker string
	// Limit is the page size, 1..1000; the registry's default (100) if 0.
	Limit int
}

// ListConfig returns every configuration value (or those of a namespace),
// ordered by id, following next_marker from page to page (spec §7.8). An
// error ends the sequence.
func (c *Client) ListConfig(ctx context.Context, opts ConfigListOptions) iter.Seq2[ConfigValue, error] {
	return all(ctx, opts.Marker, c.maxListItems, func(ctx context.Context, marker string) (Page[ConfigValue], int64, error) {
		o := opts
		o.Marker = marker
		return c.listConfigPage(ctx, o)
	})
}

// ListConfigPage returns one page of configuration values, with the
// FeedMarker to watch the events feed from (see ListServicesPage).
func (c *Client) ListConfigPage(ctx context.Context, opts ConfigListOptions) (Page[ConfigValue], error) {
	p, _, err := c.listConfigPage(ctx, opts)
	return p, err
}

// listConfigPage is ListConfigPage, also saying how many bytes of the
// answer the page was decoded from.
func (c *Client) listConfigPage(ctx context.Context, opts ConfigListOptions) (Page[ConfigValue], int64, error) {
	path := "/configuration"
	if ns := strings.Trim(opts.Namespace, "/"); ns != "" {
		// As the Node client's listForNamespace: "/configuration/ns/".
		path += "/" + pathEscapeID(ns) + "/"
	}
	return getPage[ConfigValue](ctx, c, path, pageQuery(opts.Marker, opts.Limit), opts.Limit)
}

// configPath is the URL path of one value: "/configuration/" + id, so a
// namespaced id "/a/b" gives "/configuration//a/b" (spec §7.8, §13 item 13).
func configPath(id string) string { return "/configuration/" + pathEscapeID(id) }

// GetConfig returns one configuration value (spec §7.8); ErrNotFound if it
// does not exist. A namespaced id begins with "/", e.g.
// "/production/cassandra/listen_ip".
func (c *Client) GetConfig(ctx context.Context, id string) (ConfigValue, error) {
	var v ConfigValue
	_, err := c.do(ctx, call{method: "GET", path: configPath(id), max: itemAnswer}, &v)
	if err == nil && !sameConfigID(id, v.ID) {
		err = &notTheItemError{"configuration value", id, v.ID}
	}
	return v, err
}

// sameConfigID reports whether the value got answers a read of asked: the
// same id (any case), or asked in the docs' form, "production/x" for
// "/production/x", which a registry may take (spec §13).
func sameConfigID(asked, got string) bool {
	return strings.EqualFold(got, asked) || !strings.HasPrefix(asked, "/") && strings.EqualFold(got, "/"+asked)
}

// SetConfig stores a configuration value, creating or replacing it
// (spec §7.9). ErrLimitReached if it is new and the account holds its
// maximum of values.
func (c *Client) SetConfig(ctx context.Context, id, value string) error {
	_, err := c.do(ctx, call{method: "PUT", path: configPath(id), body: map[string]string{"value": value}}, nil)
	return err
}

// DeleteConfig removes a configuration value (spec §7.10); ErrNotFound if
// it does not exist.
func (c *Client) DeleteConfig(ctx context.Context, id string) error {
	_, err := c.do(ctx, call{method: "DELETE", path: configPath(id)}, nil)
	return err
}
