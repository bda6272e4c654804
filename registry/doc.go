// Package registry is a client for the Service Registry API: services and
// their heartbeats, configuration values, the events feed and account limits.
//
// A Client authenticates with a static token or with Keystone v2
// credentials (refreshing the token before it expires and once more on a
// 401), and keeps its connections alive so that heartbeats and event polls
// reuse one:
//
//	c, err := registry.New(registry.Config{URL: "https://registry.example.com/v1.0", Username: "deploy", APIKey: key})
//
// Credentials go to the identity endpoint of the registry named by URL
// (its /v2.0), to AuthURL if set, or to a hosted region's identity service
// only when Region asks for it: never to a host the Config does not name.
//
// Every call takes a context first. Lists are iterators that follow
// next_marker through every page, up to Config.MaxListItems values; the
// Page calls return one page with the X-Registry-Marker to watch the feed
// from. A page with more values than its limit is refused. Faults come back as *Error,
// which matches ErrNotFound, ErrServiceExists, ErrLimitReached,
// ErrRateLimited, ErrUnauthorized and ErrMarkerExpired with errors.Is; a
// rate-limited write's or list read's Error says in RetryAfter how long
// to wait. A
// change that was sent but got no answer, a 5xx, or an answer that broke
// off also matches ErrOutcomeUnknown;
// a call that each of several registry nodes failed, ErrAllNodesFailed.
// The client retries nothing by itself except one new login after a 401
// (none for 24-30 s, or until a request succeeds, once the API has
// refused a token issued after its 401 too),
// and, given the URLs of several registry nodes (Config.URL), a request
// that a node failed to answer, at the next node, when sending it again is
// safe: the Heartbeater, Register, Feed and ServicesCache do their own
// retrying.
//
// On top of the calls:
//   - Register creates a service (waiting out a dead instance that still
//     holds the id) and starts a Heartbeater, which keeps it alive on the
//     spec's schedule and retries failures with a capped backoff.
//   - ServicesCache keeps the last good services list for when the
//     registry fails.
//   - Feed (and Watch) follows the events feed with long-polls, and
//     says when a re-list is needed (ErrMarkerExpired, ErrEventsOutOfOrder).
package registry
