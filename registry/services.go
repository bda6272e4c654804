package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"strings"
)

// ServiceListOptions select the services of a list.
type ServiceListOptions struct {
	// Tag, if set, keeps only the services carrying it (exact,
	// case-sensitive).
	Tag string
	// Marker is the id to start at (inclusive); empty for the beginning.
	Marker string
	// Limit is the page size, 1..1000; the registry's default (100) if 0.
	Limit int
}

// ListServices returns every service, ordered by id, following next_marker
// from page to page (spec §7.2). An error ends the sequence.
//
//	for s, err := range c.ListServices(ctx, registry.ServiceListOptions{Tag: "www"}) {
//		if err != nil { return err }
//		…
//	}
func (c *Client) ListServices(ctx context.Context, opts ServiceListOptions) iter.Seq2[Service, error] {
	return all(ctx, opts.Marker, c.maxListItems, c.servicesPage(opts))
}

// ListServicesPages yields every page of services, following next_marker
// as ListServices does (and bounded as it is, by Config.MaxListItems), for
// a caller that needs the pages: the first one's FeedMarker, to mirror the
// registry. An error is yielded once and ends the sequence.
func (c *Client) ListServicesPages(ctx context.Context, opts ServiceListOptions) iter.Seq2[Page[Service], error] {
	return pages(ctx, opts.Marker, c.maxListItems, c.servicesPage(opts))
}

// servicesPage fetches the page of services at a marker, with opts'
// other options.
func (c *Client) servicesPage(opts ServiceListOptions) fetcher[Service] {
	return func(ctx context.Context, marker string) (Page[Service], int64, error) {
		o := opts
		o.Marker = marker
		return c.listServicesPage(ctx, o)
	}
}

// ListServicesPage returns one page of services, with the FeedMarker to
// watch the events feed from. To mirror the registry: take the first
// page's FeedMarker, fetch the rest with Marker = NextMarker until it is
// empty, then Watch from the FeedMarker.
func (c *Client) ListServicesPage(ctx context.Context, opts ServiceListOptions) (Page[Service], error) {
	p, _, err := c.listServicesPage(ctx, opts)
	return p, err
}

// listServicesPage is ListServicesPage, also saying how many bytes of the
// answer the page was decoded from.
func (c *Client) listServicesPage(ctx context.Context, opts ServiceListOptions) (Page[Service], int64, error) {
	q := pageQuery(opts.Marker, opts.Limit)
	if opts.Tag != "" {
		q.Set("tag", opts.Tag)
	}
	return getPage[Service](ctx, c, "/services", q, opts.Limit)
}

// GetService returns one service (spec §7.3); ErrNotFound if it does not
// exist.
func (c *Client) GetService(ctx context.Context, id string) (Service, error) {
	var s Service
	_, err := c.do(ctx, call{method: "GET", path: servicePath(id), max: itemAnswer}, &s)
	if err == nil && !strings.EqualFold(s.ID, id) {
		err = &notTheItemError{"service", id, s.ID}
	}
	return s, err
}

// notTheItemError is a successful answer to a read of one item that is
// not that item: an empty body, a proxy's page, another id.
type notTheItemError struct{ kind, asked, got string }

func (e *notTheItemError) Error() string {
	if e.got == "" {
		return fmt.Sprintf("registry: a successful answer without the %s %q (a proxy's page or an empty body?)", e.kind, e.asked)
	}
	return fmt.Sprintf("registry: asked for the %s %q, the answer is %s", e.kind, e.asked, quotedText(e.got))
}

// newServiceBody is the body of POST /services (spec §7.4).
type newServiceBody struct {
	ID               string            `json:"id"`
	HeartbeatTimeout int               `json:"heartbeat_timeout"`
	Tags             []string          `json:"tags"`
	Metadata         map[string]string `json:"metadata"`
}

func newServiceBodyOf(s Service) newServiceBody {
	b := newServiceBody{ID: s.ID, HeartbeatTimeout: s.HeartbeatTimeout, Tags: s.Tags, Metadata: s.Metadata}
	if b.Tags == nil {
		b.Tags = []string{}
	}
	if b.Metadata == nil {
		b.Metadata = map[string]string{}
	}
	return b
}

// MaxRequestBody is the size of a request body the registry refuses (413
// Request Entity Too Large), and of any larger one (spec §2.3).
const MaxRequestBody = 5000

// CreateServiceBodySize is the size in bytes of the body CreateService
// sends for s: the registry refuses the create if it is MaxRequestBody or
// more, which tags and metadata within their own limits can reach.
func CreateServiceBodySize(s Service) int {
	b, err := json.Marshal(newServiceBodyOf(s))
	if err != nil {
		return 0
	}
	return len(b)
}

// tokenBody is the answer of create and heartbeat (spec §6.4).
type tokenBody struct {
	Token string `json:"token"`
}

// CreateService creates a service from s.ID, s.HeartbeatTimeout (3..120
// seconds), s.Tags and s.Metadata, and returns its first heartbeat token
// (spec §7.4). The registry times the service out unless it is heartbeated
// within the timeout: Register creates and keeps heartbeating; for a
// service created here, StartHeartbeat does. ErrServiceExists if the id is
// taken, ErrLimitReached if the account holds its maximum of services.
func (c *Client) CreateService(ctx context.Context, s Service) (token string, err error) {
	var out tokenBody
	if _, err := c.do(ctx, call{method: "POST", path: "/services", body: newServiceBodyOf(s), max: tokenAnswer}, &out); err != nil {
		return "", err
	}
	if !isToken(out.Token) {
		// A success without a token (a proxy's page, an empty body): the
		// service may have been made, and cannot be heartbeated.
		return "", &outcomeUnknown{errNoToken}
	}
	return out.Token, nil
}

// errNoToken is a successful answer to a create or a heartbeat that holds
// no heartbeat token. Temporary: the heartbeat is sent again with the same
// token, which the registry answers with the same next token.
var errNoToken = errors.New("registry: a successful answer without a heartbeat token (a proxy's page, an empty body, or a token no registry makes)")

// tokenAnswer bounds the answer of a create or a heartbeat, and
// maxTokenLen the token in it: a registry's is a 36-character UUID. A
// client keeps the token and sends it back with each heartbeat, so a
// registry's (or a proxy's) huge one would cost it memory and bandwidth
// at every heartbeat.
const (
	tokenAnswer = 64 << 10
	maxTokenLen = 1 << 10
)

// isToken reports whether t can be a heartbeat token: 1..maxTokenLen
// printable ASCII characters, no space.
func isToken(t string) bool {
	return t != "" && len(t) <= maxTokenLen && printableASCII(t)
}

// ServicePatch is a change to a service (spec §7.5): the fields set are
// replaced, the others left alone.
type ServicePatch struct {
	// Tags, if not nil, replace the tags; []string{} removes them all.
	Tags []string
	// Metadata, if not nil, replaces the metadata; an empty map removes it.
	Metadata map[string]string
	// HeartbeatTimeout, if not 0, is the new timeout in seconds; it applies
	// from the next heartbeat.
	HeartbeatTimeout int
}

// UpdateService changes a service (spec §7.5); ErrNotFound if it does not
// exist.
func (c *Client) UpdateService(ctx context.Context, id string, u ServicePatch) error {
	// A map, not a struct with omitempty: an empty, non-nil Tags must be
	// sent as [].
	body := map[string]any{}
	if u.Tags != nil {
		body["tags"] = u.Tags
	}
	if u.Metadata != nil {
		body["metadata"] = u.Metadata
	}
	if u.HeartbeatTimeout != 0 {
		body["heartbeat_timeout"] = u.HeartbeatTimeout
	}
	_, err := c.do(ctx, call{method: "PUT", path: servicePath(id), body: body}, nil)
	return err
}

// servicePath is the path of a service: its id escaped whole, a slash
// too, as no service id holds one (the registry then says what is wrong
// with the id, instead of that it serves no such path).
func servicePath(id string) string { return "/services/" + url.PathEscape(id) }

// DeleteService removes a service and invalidates its heartbeat token
// (spec §7.6); ErrNotFound if it does not exist.
func (c *Client) DeleteService(ctx context.Context, id string) error {
	_, err := c.do(ctx, call{method: "DELETE", path: servicePath(id)}, nil)
	return err
}

// Heartbeat tells the registry the service is alive, presenting the
// outstanding token, and returns the next one (spec §7.7). Repeating a
// token whose answer was lost returns the same next token again.
// ErrNotFound if the registry no longer knows the service or the token.
// A Heartbeater does this on a schedule.
func (c *Client) Heartbeat(ctx context.Context, id, token string) (next string, err error) {
	var out tokenBody
	_, err = c.do(ctx, call{method: "POST", path: servicePath(id) + "/heartbeat", body: tokenBody{token}, max: tokenAnswer}, &out)
	if err == nil && !isToken(out.Token) {
		out.Token, err = "", errNoToken
	}
	return out.Token, err
}
