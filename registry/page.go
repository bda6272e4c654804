package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"iter"
	"math"
	"net/url"
	"strconv"
	"strings"
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

// fetcher fetches the page of a list at a marker, and says how many bytes
// of the answer it was decoded from.
type fetcher[T any] func(ctx context.Context, marker string) (Page[T], int64, error)

// maxListBytesPerItem is how many bytes of answers a list may take for
// each value it may hold (MaxListItems): 1 GiB with the default. The
// largest service the API takes is some tens of kilobytes of JSON (20
// metadata pairs of 255 characters, escaped), a configuration value at
// most 6 KiB, and real ones far less: an average of 10 KiB a value is no
// registry's data.
const maxListBytesPerItem = 10 << 10

// listBytes is the most bytes of answers a list of maxItems values
// takes; no bound where it would pass the largest int64 (a MaxListItems
// meaning none).
func listBytes(maxItems int) int64 {
	if int64(maxItems) > math.MaxInt64/maxListBytesPerItem {
		return math.MaxInt64
	}
	return int64(maxItems) * maxListBytesPerItem
}

// kibOrMiB writes n bytes in whole MiB, or KiB below one MiB.
func kibOrMiB(n int64) string {
	if n < 1<<20 {
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n>>20, 10) + " MiB"
}

// maxPageLimit is the largest page the API serves (spec §10.1): the most
// values a page asked for without a limit may hold.
const maxPageLimit = 1000

// listEnvelope is the wire form of a list answer. It decodes itself from
// the answer's stream (see decodeStream), holding at most the limit asked
// for.
type listEnvelope[T any] struct {
	// Values is a pointer so that an answer without them (a proxy's page,
	// an empty body) is told from an empty list.
	Values   *[]T
	Metadata struct {
		NextMarker *string `json:"next_marker"`
	}
	// limit is the page size asked for; 0 for the registry's default.
	limit int
	// size is how many bytes of the answer decodeStream read.
	size int64
}

// newListEnvelope returns the envelope of a page asked for with limit.
func newListEnvelope[T any](limit int) *listEnvelope[T] { return &listEnvelope[T]{limit: limit} }

// errPageTooLong is a page with more values than were asked for.
type errPageTooLong struct{ limit int }

func (e errPageTooLong) Error() string {
	return fmt.Sprintf("the registry sent a page of more than the %d values asked for: a page holds at most its limit, so the registry is at fault (refused without decoding the rest)", e.limit)
}

// decodeStream decodes {"values":[…],"metadata":{…}} value by value and
// fails at the first value past the limit asked for (or maxPageLimit), so
// that a registry that sends more, millions of {} in 64 MiB, costs no
// more than a full page. Keys match as encoding/json matches them; other
// keys are skipped.
func (e *listEnvelope[T]) decodeStream(dec *json.Decoder) error {
	defer func() { e.size = dec.InputOffset() }()
	t, err := dec.Token()
	if err != nil || t == nil {
		return err // io.EOF for an empty body; null holds no list
	}
	if t != json.Delim('{') {
		return fmt.Errorf("a list answer is a JSON object, not %s", tokenText(t))
	}
	for {
		t, err := nextToken(dec)
		if err != nil {
			return err
		}
		key, _ := t.(string) // an object's keys are strings
		switch {
		case t == json.Delim('}'):
			return nil
		case strings.EqualFold(key, "values"):
			err = e.decodeValues(dec)
		case strings.EqualFold(key, "metadata"):
			err = dec.Decode(&e.Metadata)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return unexpectedEOF(err)
		}
	}
}

// decodeValues decodes the values list, up to the page's limit.
func (e *listEnvelope[T]) decodeValues(dec *json.Decoder) error {
	if e.Values != nil {
		return errors.New(`two "values" lists in one answer`)
	}
	t, err := nextToken(dec)
	if err != nil || t == nil {
		return err
	}
	if t != json.Delim('[') {
		return fmt.Errorf(`"values" is a JSON list, not %s`, tokenText(t))
	}
	limit := e.limit
	if limit <= 0 {
		limit = maxPageLimit
	}
	values := []T{}
	for dec.More() {
		if len(values) == limit {
			return errPageTooLong{limit}
		}
		var zero T
		values = append(values, zero) // decoded in place: no copy per value
		if err := dec.Decode(&values[len(values)-1]); err != nil {
			return err
		}
	}
	if _, err := nextToken(dec); err != nil { // the closing ]
		return err
	}
	e.Values = &values
	return nil
}

// tokenText shows a token of an answer in an error: a string as
// ShownText shows it, one line of bounded length.
func tokenText(t json.Token) string {
	if s, ok := t.(string); ok {
		return "the string " + ShownText(s)
	}
	return fmt.Sprint(t)
}

// nextToken is dec.Token inside a value, where the input's end is a
// truncated answer, not an empty one.
func nextToken(dec *json.Decoder) (json.Token, error) {
	t, err := dec.Token()
	return t, unexpectedEOF(err)
}

// unexpectedEOF turns io.EOF into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
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

// getPage fetches one page of a list, asked for with limit, and says how
// many bytes of the answer it was decoded from.
func getPage[T any](ctx context.Context, c *Client, path string, q url.Values, limit int) (Page[T], int64, error) {
	env := newListEnvelope[T](limit)
	h, err := c.do(ctx, call{method: "GET", path: path, query: q}, env)
	if err != nil {
		return Page[T]{}, 0, err
	}
	if env.Values == nil {
		return Page[T]{}, 0, errNotAList(path)
	}
	p := Page[T]{Values: *env.Values, FeedMarker: h.Get("X-Registry-Marker")}
	if env.Metadata.NextMarker != nil {
		p.NextMarker = *env.Metadata.NextMarker
	}
	if err := checkMarker(path, "a next_marker", p.NextMarker); err != nil {
		return Page[T]{}, 0, err
	}
	if err := checkMarker(path, "an X-Registry-Marker", p.FeedMarker); err != nil {
		return Page[T]{}, 0, err
	}
	return p, env.size, nil
}

// maxMarker bounds a marker the registry gives (a next_marker, an event
// id, the X-Registry-Marker header) that the client sends back in its next request's URL: ids are at
// most 500 characters (configuration ids), event ids 36. Taken whole, a
// hostile registry's 60 MiB marker went into the next URL and into the
// errors that show it.
const maxMarker = 1024

// checkMarker refuses a marker (what names it) longer than maxMarker.
func checkMarker(path, what, marker string) error {
	if len(marker) > maxMarker {
		return fmt.Errorf("registry: GET %s: %s of %d bytes, where ids have at most 500 characters", path, what, len(marker))
	}
	return nil
}

// errNotAList is a successful answer to a list request that holds no
// list: taken for an empty list, it would empty a cache of the services.
func errNotAList(path string) error {
	return fmt.Errorf("registry: GET %s: a successful answer without a list (a proxy's page or an empty body?)", path)
}

// all yields the values of every page (see pages).
func all[T any](ctx context.Context, marker string, maxItems int, fetch fetcher[T]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for p, err := range pages(ctx, marker, maxItems, fetch) {
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
		}
	}
}

// pages yields every page of a list, fetching the next page with
// fetch(marker) while the last one named a next marker. An error is
// yielded once and ends the sequence: fetch's; a next marker that came
// before (a registry that pages in a loop); or a page that takes the list
// past maxItems values (a registry that pages without end, each time with
// a new marker), where every page counts as at least one value, so that
// empty pages end too, or past maxItems times maxListBytesPerItem bytes
// (a registry that sends few but huge values, each page up to maxAnswer).
// The markers seen are kept as hashes: a registry's long markers do not
// add up.
func pages[T any](ctx context.Context, marker string, maxItems int, fetch fetcher[T]) iter.Seq2[Page[T], error] {
	return func(yield func(Page[T], error) bool) {
		seed := maphash.MakeSeed()
		seen := map[uint64]bool{maphash.String(seed, marker): true}
		maxBytes := listBytes(maxItems)
		items, bytes := 0, int64(0)
		for {
			p, size, err := fetch(ctx, marker)
			if err == nil {
				bytes += size
				if items += max(len(p.Values), 1); items > maxItems {
					err = fmt.Errorf("registry: the list went past %d values, the most a list takes (Config.MaxListItems, [registry] max_list_items): the registry pages without end, or holds more than that", maxItems)
				} else if bytes > maxBytes {
					err = fmt.Errorf("registry: the list went past %s, the most a list takes (%d KiB for each of Config.MaxListItems, [registry] max_list_items): the registry sends values far larger than any it keeps", kibOrMiB(maxBytes), maxListBytesPerItem>>10)
				}
			}
			if err != nil {
				yield(Page[T]{}, err)
				return
			}
			if !yield(p, nil) || p.NextMarker == "" {
				return
			}
			h := maphash.String(seed, p.NextMarker)
			if seen[h] {
				yield(Page[T]{}, fmt.Errorf("registry: the list's next_marker %s came back: the registry pages in a loop", ShownText(p.NextMarker)))
				return
			}
			seen[h] = true
			marker = p.NextMarker
		}
	}
}
