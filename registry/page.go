package registry

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strconv"
)

// Page is one page of a list (spec §6.5).
type Page[T any] struct {
	Values []T
	// NextMarker is the id of the first item of the next page; pass it as
	// the Marker of the next call. Empty on the last page.
	NextMarker string
	// FeedMarker is the answer's X-Registry-Marker: an events marker such
	// that every change committed after this read appears in the events
	// feed from it. To mirror the registry, list every page, then Watch
	// from the FeedMarker of the first page. Empty if the server does not
	// send it.
	FeedMarker string
}

// listEnvelope is the wire form of a list answer.
type listEnvelope[T any] struct {
	// Values is a pointer so that an answer without them (a proxy's page,
	// an empty body) is told from an empty list.
	Values   *[]T `json:"values"`
	Metadata struct {
		NextMarker *string `json:"next_marker"`
	} `json:"metadata"`
}

// pageQuery is the query of a list request.
func pageQuery(marker string, limit int) url.Values {
	q := url.Values{}
	if marker != "" {
		q.Set("marker", marker)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}

// getPage fetches one page of a list.
func getPage[T any](ctx context.Context, c *Client, path string, q url.Values) (Page[T], error) {
	var env listEnvelope[T]
	h, err := c.do(ctx, call{method: "GET", path: path, query: q}, &env)
	if err != nil {
		return Page[T]{}, err
	}
	if env.Values == nil {
		return Page[T]{}, errNotAList(path)
	}
	p := Page[T]{Values: *env.Values, FeedMarker: h.Get("X-Registry-Marker")}
	if env.Metadata.NextMarker != nil {
		p.NextMarker = *env.Metadata.NextMarker
	}
	return p, nil
}

// errNotAList is a successful answer to a list request that holds no
// list: taken for an empty list, it would empty a cache of the services.
func errNotAList(path string) error {
	return fmt.Errorf("registry: GET %s: a successful answer without a list (a proxy's page or an empty body?)", path)
}

// all yields the values of every page, fetching the next page with
// fetch(marker) while the last one named a next marker. An error is
// yielded once and ends the sequence; so does a next marker that came
// before (a registry that pages in a loop).
func all[T any](ctx context.Context, marker string, fetch func(ctx context.Context, marker string) (Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		seen := map[string]bool{marker: true}
		for {
			p, err := fetch(ctx, marker)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, v := range p.Values {
				if !yield(v, nil) {
					return
				}
			}
			if p.NextMarker == "" {
				return
			}
			if seen[p.NextMarker] {
				var zero T
				yield(zero, fmt.Errorf("registry: the list's next_marker %q came back: the registry pages in a loop", p.NextMarker))
				return
			}
			seen[p.NextMarker] = true
			marker = p.NextMarker
		}
	}
}
