package watcher

import "time"

// Status is how the watcher is doing, for health checks.
type Status struct {
	// Synced is true once a full list succeeded.
	Synced bool `json:"synced"`
	// Marker is the feed position of the current snapshot.
	Marker string `json:"marker,omitempty"`
	// LastSync is when the last full list succeeded.
	LastSync time.Time `json:"last_sync,omitzero"`
	// LastContact is when the registry last answered (a long-poll that
	// timed out without events counts).
	LastContact time.Time `json:"last_contact,omitzero"`
	// LastError is the last error talking to the registry since the last
	// contact, empty when the last request succeeded.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Resyncs counts the full lists after the first.
	Resyncs int `json:"resyncs"`
	// Unanswered is, once Run has ended in the middle of a list, that
	// list's error: the request that had no answer yet (the login at the
	// identity service, or a page of the list), as the registry client
	// names it, with the cause of Run's end. Empty otherwise. A one-shot
	// command that gives up on the first sync says with it what it was
	// waiting for.
	Unanswered string `json:"unanswered,omitempty"`
}
