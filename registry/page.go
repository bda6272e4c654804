package registry

import (
	"context"
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
	Values   []T `json:"values"`
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
	p := Page[T]{Values: env.Values, FeedMarker: h.Get("X-Registry-Marker")}
	if env.Metadata.NextMarker != nil {
		p.NextMarker = *env.Metadata.NextMarker
	}
	return p, nil
}

// all yields the values of every page, fetching the next page with
// fetch(marker) while the last one named a next marker. An error is
// yielded once and ends the sequence.
func all[T any](ctx context.Context, marker string, fetch func(ctx context.Context, marker string) (Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
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
			// A marker that does not move would loop forever.
			if p.NextMarker == "" || p.NextMarker == marker {
				return
			}
			marker = p.NextMarker
		}
	}
}
