package store

import "context"

// A MoveBudget bounds the writes that heartbeats make in a store whose
// nodes each hold some services' heartbeat state (the etcd store): a
// heartbeat that reaches a node other than the live one holding its
// service moves the service, which takes etcd writes, where a heartbeat
// otherwise changes memory only. Heartbeats are outside the write rate
// limit, so without a budget one account alternating its heartbeats
// between two nodes would write to etcd at the pace it heartbeats.
type MoveBudget interface {
	// Move is called before a heartbeat of the tenant moves a service
	// from a live node; an error refuses the heartbeat, and the store
	// returns it as it is.
	Move(tenant string) error
}

type moveBudgetKey struct{}

// WithMoveBudget returns ctx carrying b, for the store's Heartbeat.
func WithMoveBudget(ctx context.Context, b MoveBudget) context.Context {
	return context.WithValue(ctx, moveBudgetKey{}, b)
}

// SpendMove asks the budget that ctx carries, if any, for one move of the
// tenant.
func SpendMove(ctx context.Context, tenant string) error {
	if b, ok := ctx.Value(moveBudgetKey{}).(MoveBudget); ok {
		return b.Move(tenant)
	}
	return nil
}
