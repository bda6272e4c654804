package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
)

// AccountRecord is an account as the stores keep it.
type AccountRecord struct {
	CreatedAt int64  `json:"created_at"` // ms
	Limits    Limits `json:"limits"`
	// Head is the id of the newest event appended.
	Head timeuuid.UUID `json:"head"`
	// Pruned is the id of the newest event retention deleted.
	Pruned timeuuid.UUID `json:"pruned"`
	// Services and Configs count the live objects, for the limits, in
	// stores that keep the counts with the account.
	Services int `json:"services,omitempty"`
	Configs  int `json:"configuration_values,omitempty"`
	// EventBytes is the size of the events kept after Pruned and
	// BytesFrom, in stores that keep it with the account (BytesCounted),
	// for the cap on an account's events' bytes. An account made before
	// its store counted them counts the events after BytesFrom, its head
	// then: the events before go first when the cap deletes.
	EventBytes   int64         `json:"event_bytes,omitempty"`
	BytesCounted bool          `json:"event_bytes_counted,omitempty"`
	BytesFrom    timeuuid.UUID `json:"event_bytes_from"`
	// WriteTokens is what was left of the account's write budget at
	// WritesAt (Unix ms), in stores whose nodes share the budget through
	// the account (the etcd store); a zero WritesAt is a full budget.
	WriteTokens float64 `json:"write_tokens,omitempty"`
	WritesAt    int64   `json:"writes_at,omitempty"`
}

// Counted reports whether the account's EventBytes counts the event id.
func (a AccountRecord) Counted(id timeuuid.UUID) bool {
	return a.BytesCounted && timeuuid.Compare(id, a.BytesFrom) > 0
}

// Account returns the record as an Account.
func (a AccountRecord) Account(tenant string) Account {
	return Account{Tenant: tenant, CreatedAt: time.UnixMilli(a.CreatedAt), Limits: a.Limits, Head: a.Head}
}

// FeedMarker is the feed position of a read that saw the record: just
// after the newest event, or the account's creation if it has none (design
// item 3).
func (a AccountRecord) FeedMarker() timeuuid.UUID {
	if a.Head.IsZero() {
		return timeuuid.Low(time.UnixMilli(a.CreatedAt))
	}
	return a.Head.Next()
}

// NextEventID returns the id of the account's next event, appended now:
// its time is now, or one tick after the head if the clock has not moved
// past it, so ids are strictly increasing in commit order (design item 5);
// the first event's is not before the account's creation, the marker of a
// read of its empty feed (FeedMarker), though the clock be behind it.
func (a AccountRecord) NextEventID(now time.Time, tail uint64) timeuuid.UUID {
	ticks := timeuuid.Ticks(now)
	if a.Head.IsZero() {
		ticks = max(ticks, a.FeedMarker().Ticks())
	} else {
		ticks = max(ticks, a.Head.Ticks()+1)
	}
	return timeuuid.New(ticks, tail)
}

// Expired reports whether retention has deleted events at or after from:
// a marker before the newest event deleted (ErrMarkerExpired).
func (a AccountRecord) Expired(from timeuuid.UUID) bool {
	return !a.Pruned.IsZero() && timeuuid.Compare(from, a.Pruned) < 0
}

// UnmarshalJSON decodes the record; the ids are in their text form.
func (a *AccountRecord) UnmarshalJSON(b []byte) error {
	type plain AccountRecord
	var w struct {
		plain
		Head      string `json:"head"`
		Pruned    string `json:"pruned"`
		BytesFrom string `json:"event_bytes_from"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*a = AccountRecord(w.plain)
	for _, f := range []struct {
		s   string
		dst *timeuuid.UUID
	}{{w.Head, &a.Head}, {w.Pruned, &a.Pruned}, {w.BytesFrom, &a.BytesFrom}} {
		if f.s == "" {
			continue
		}
		u, err := timeuuid.Parse(f.s)
		if err != nil {
			return fmt.Errorf("account: %w", err)
		}
		*f.dst = u
	}
	return nil
}

// MarshalJSON encodes the record with the ids in their text form.
func (a AccountRecord) MarshalJSON() ([]byte, error) {
	type plain AccountRecord
	w := struct {
		plain
		Head      string `json:"head,omitempty"`
		Pruned    string `json:"pruned,omitempty"`
		BytesFrom string `json:"event_bytes_from,omitempty"`
	}{plain: plain(a)}
	if !a.Head.IsZero() {
		w.Head = a.Head.String()
	}
	if !a.Pruned.IsZero() {
		w.Pruned = a.Pruned.String()
	}
	if !a.BytesFrom.IsZero() {
		w.BytesFrom = a.BytesFrom.String()
	}
	return json.Marshal(w)
}
