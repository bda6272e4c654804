package etcdstore

import (
	"context"
	"strings"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// swapped returns a client that is cli but for its KV and Lease, replaced
// by kv and lease unless nil: a test's way to hold or fail etcd calls. It
// knows no endpoints, so the store sends no hedges past kv.
func swapped(cli *clientv3.Client, kv clientv3.KV, lease clientv3.Lease) *clientv3.Client {
	c := clientv3.NewCtxClient(context.Background())
	c.KV, c.Lease, c.Watcher, c.Cluster, c.Maintenance, c.Auth = cli.KV, cli.Lease, cli.Watcher, cli.Cluster, cli.Maintenance, cli.Auth
	if kv != nil {
		c.KV = kv
	}
	if lease != nil {
		c.Lease = lease
	}
	return c
}

// sendTxn sends a gathered transaction under ctx.
type sendTxn func(ctx context.Context) (*clientv3.TxnResponse, error)

// gatedKV hands each transaction that writes key, once the test has set
// it, to gate instead of sending it: n counts them from 1, ctx is the
// caller's, and send sends the transaction under any context (now, later,
// or never); gate's answer is the caller's. With nested, a write inside a
// nested transaction counts too (heartbeat batches write each heartbeat
// in one). If gates is set, it chooses the transactions to gate instead,
// by their Then operations. Other transactions go at once.
type gatedKV struct {
	clientv3.KV
	nested bool
	key    atomic.Pointer[string]
	gates  func(then []clientv3.Op) bool
	n      atomic.Int32
	gate   func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error)
}

func (g *gatedKV) Txn(ctx context.Context) clientv3.Txn { return &gatedTxn{g: g, ctx: ctx} }

// gatedTxn gathers a transaction, to send it through its gatedKV.
type gatedTxn struct {
	g         *gatedKV
	ctx       context.Context
	cmps      []clientv3.Cmp
	then, els []clientv3.Op
	gated     bool
}

func (t *gatedTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.cmps = append(t.cmps, cs...); return t }
func (t *gatedTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.els = append(t.els, ops...); return t }

func (t *gatedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	if t.g.gates != nil {
		t.gated = t.gated || t.g.gates(ops)
	} else if key := t.g.key.Load(); key != nil && writesKey(ops, *key, t.g.nested) {
		t.gated = true
	}
	t.then = append(t.then, ops...)
	return t
}

func (t *gatedTxn) send(ctx context.Context) (*clientv3.TxnResponse, error) {
	return t.g.KV.Txn(ctx).If(t.cmps...).Then(t.then...).Else(t.els...).Commit()
}

func (t *gatedTxn) Commit() (*clientv3.TxnResponse, error) {
	if t.gated {
		return t.g.gate(t.g.n.Add(1), t.ctx, t.send)
	}
	return t.send(t.ctx)
}

// writesKey reports whether one of ops writes key, looking into nested
// transactions' branches if nested.
func writesKey(ops []clientv3.Op, key string, nested bool) bool {
	for _, op := range ops {
		if op.IsTxn() {
			if _, then, els := op.Txn(); nested && (writesKey(then, key, true) || writesKey(els, key, true)) {
				return true
			}
			continue
		}
		if (op.IsPut() || op.IsDelete()) && string(op.KeyBytes()) == key {
			return true
		}
	}
	return false
}

// heldKV holds back the first transaction that writes key until the test
// closes release; arrived is closed when it is held.
type heldKV struct {
	*gatedKV
	arrived, release chan struct{}
}

func holdFirstWrite(kv clientv3.KV, nested bool) *heldKV {
	h := &heldKV{arrived: make(chan struct{}), release: make(chan struct{})}
	h.gatedKV = &gatedKV{KV: kv, nested: nested, gate: func(n int32, ctx context.Context, send sendTxn) (*clientv3.TxnResponse, error) {
		if n == 1 {
			close(h.arrived)
			<-h.release
		}
		return send(ctx)
	}}
	return h
}

// holdFirstList holds back the first list of the node keys (under prefix)
// that a node makes after it sent its registration, the list that starts
// its node watch, until the test closes release; arrived is closed when
// it is held.
func holdFirstList(kv clientv3.KV, prefix string) *heldKV {
	var registered atomic.Bool
	h := holdFirstWrite(kv, false)
	h.gates = func(then []clientv3.Op) bool {
		for _, op := range then {
			switch {
			case op.IsPut() && strings.HasPrefix(string(op.KeyBytes()), prefix):
				registered.Store(true)
			case op.IsGet() && string(op.KeyBytes()) == prefix && len(op.RangeBytes()) > 0:
				return registered.Load()
			}
		}
		return false
	}
	return h
}
