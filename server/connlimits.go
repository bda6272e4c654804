package server

import "time"

// ConnLimits returns cfg with the connection limits it leaves zero derived
// from nofile, the process's descriptor limit (4096 if not positive):
//
//   - a reserve of a tenth of the descriptors (at least 64) is never given
//     to client connections: the store's files, the listener, /healthz and
//     new clients always have descriptors left; MaxConns is the rest;
//   - MaxWaiters is three quarters of MaxConns, so a quarter is always left
//     for other requests;
//   - MaxWaitersPerTenant is half of MaxWaiters, at most 20000, so one
//     tenant never takes every waiting slot;
//   - MaxIdleConns is half of MaxConns, and MaxIdleConnsPerTenant is
//     MaxWaitersPerTenant, so that a tenant's long-polls answered at once
//     stay connected;
//   - UnauthIdleTimeout is 10 seconds.
func ConnLimits(cfg Config, nofile int) Config {
	if nofile <= 0 {
		nofile = 4096
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = max(nofile-max(64, nofile/10), 16)
	}
	if cfg.MaxWaiters <= 0 {
		cfg.MaxWaiters = max(cfg.MaxConns*3/4, 1)
	}
	if cfg.MaxWaitersPerTenant <= 0 {
		cfg.MaxWaitersPerTenant = min(max(cfg.MaxWaiters/2, 1), 20000)
	}
	if cfg.MaxListReadsWaitingPerTenant <= 0 {
		// With its waiting long-polls (3/8 of MaxConns), one tenant
		// holds half of the connections at most.
		cfg.MaxListReadsWaitingPerTenant = max(cfg.MaxConns/8, 1)
	}
	if cfg.MaxIdleConns <= 0 {
		cfg.MaxIdleConns = max(cfg.MaxConns/2, 1)
	}
	if cfg.MaxIdleConnsPerTenant <= 0 {
		cfg.MaxIdleConnsPerTenant = cfg.MaxWaitersPerTenant
	}
	if cfg.UnauthIdleTimeout <= 0 {
		cfg.UnauthIdleTimeout = 10 * time.Second
	}
	return cfg
}

// DescriptorLimit is the process's descriptor limit (RLIMIT_NOFILE), or 0
// where it is unknown.
func DescriptorLimit() int { return descriptorLimit() }
