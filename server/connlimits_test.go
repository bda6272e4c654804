package server_test

import (
	"testing"

	"github.com/svcreg/svcreg/server"
)

// The limits left zero are derived from the descriptor limit: a tenant's
// long-polls (3/8 of MaxConns) and its list reads waiting (an eighth) hold
// half of the connections at most.
func TestConnLimitsDerived(t *testing.T) {
	t.Parallel()
	cfg := server.ConnLimits(server.Config{}, 600)
	if cfg.MaxConns != 536 || cfg.MaxWaitersPerTenant != 201 || cfg.MaxListReadsWaitingPerTenant != 67 {
		t.Errorf("from 600 descriptors: max conns %d, a tenant's waiters %d and list reads waiting %d; want 536, 201, 67",
			cfg.MaxConns, cfg.MaxWaitersPerTenant, cfg.MaxListReadsWaitingPerTenant)
	}
	if cfg := server.ConnLimits(server.Config{MaxListReadsWaitingPerTenant: 5}, 600); cfg.MaxListReadsWaitingPerTenant != 5 {
		t.Errorf("a limit given: %d, want it kept", cfg.MaxListReadsWaitingPerTenant)
	}
}
