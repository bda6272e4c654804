// Package registry is a client for the Service Registry API: services and
// their heartbeats, configuration values, the events feed and account limits.
package registry
