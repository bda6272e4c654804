// Package watcher follows the registry's events feed and keeps an immutable
// Snapshot of its services and configuration: it lists everything, then
// long-polls the feed from the lists' X-Registry-Marker, and lists again
// when the feed cannot be followed (an expired marker, a reconnect after an
// outage, an event it cannot decode, and periodically as a safety net).
// Snapshots share structure: applying an event costs O(log n), not a copy
// of the registry.
package watcher
