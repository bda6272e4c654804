// Package render turns registry snapshots into load balancer
// configuration files: it renders templates on a [watcher.Snapshot] and
// installs and reloads what changed.
//
// A [Set] is a configuration's templates, each parsed once, gathered into
// reload groups; it is immutable, and a reload of the configuration builds
// a new one. A [Template] holds no execution state: every render has its
// own (the snapshot, the render_timeout and max_output bounds, the
// services a safe function refused, the list sizes min_instances checks),
// so templates may render at once.
//
// A [Renderer] takes each group through the steps of a pass: render every
// template, and, when an output changed, stage the files next to their
// destinations, run the group's check command on them, install them
// atomically, and reload (through a runtime API, a signal to the --exec
// command, or the reload command), restoring the previous files when the
// reload fails. A change a runtime API can make is applied at once and
// checked and installed behind the loop, on the latest file applied (its
// live state reverted when that fails). It never installs from an
// unsynced snapshot. [Health]
// answers /healthz and /readyz with each group's last result of every
// [Step]; [Status] feeds the status page; [Loop] runs passes as snapshots
// arrive, debounced.
//
// Registry data (ids, tags, metadata, configuration values) is untrusted:
// the safe functions (endpoints, ident, nginxString, configAs, …) turn it
// into config tokens such as an [Endpoint], or leave the service out (use
// the value's default) and report it as a [Refusal].
package render
