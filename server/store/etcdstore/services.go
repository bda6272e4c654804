package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/server/store"
)

// hbRecord is the heartbeat state of a service, at P hb/<T>/<id>, as of
// its last write. While a node holds the service (heartbeat.go), that
// node's memory has the newer state and the record names it.
type hbRecord struct {
	Incarnation uint64 `json:"incarnation"`
	Seq         uint32 `json:"seq"`
	// Cur is the outstanding token; Prev the one consumed to issue it:
	// repeating Prev returns Cur again (design item 6).
	Cur  string `json:"cur"`
	Prev string `json:"prev,omitempty"`
	// Deadline is in Unix ns; the deadline index entry carries the same.
	// It is at or after the deadline of every token any node handed out
	// for the service: the service is surely due once it passes.
	Deadline int64 `json:"deadline"`
	LastSeen int64 `json:"last_seen,omitempty"` // ms
	// Holder is the node holding the service, HolderLease the lease of
	// its node key; empty when none does.
	Holder      string `json:"holder,omitempty"`
	HolderLease int64  `json:"holder_lease,omitempty"`
	// Loose: a node that held the service died, so tokens minted after
	// Cur may be outstanding; any minted for the service with a later
	// sequence number is accepted once (design item 10's rule).
	Loose bool `json:"loose,omitempty"`
	// Ahead: Cur was issued for a token taken by that rule, and no token
	// issued since has been used, so tokens the dead node handed out may
	// still be ahead of Cur: one minted for the service with a number at
	// or past Cur's is accepted too, so that an older token sent again
	// late and taken first cannot lock the client's newest out.
	Ahead bool `json:"ahead,omitempty"`
}

func (h hbRecord) lastSeen() time.Time {
	if h.LastSeen == 0 {
		return time.Time{}
	}
	return time.UnixMilli(h.LastSeen)
}

// CreateService implements store.Store (spec §7.4).
func (s *Store) CreateService(ctx context.Context, tenantID string, ns store.NewService) (string, error) {
	// An expired service holding the id is timed out first, so the create
	// succeeds (spec §7.4 step 3, §11.3).
	t, err := s.rectified(ctx, tenantID)
	if err != nil {
		return "", err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	rec := store.ServiceRecord{ID: ns.ID, Tags: ns.Tags, Metadata: ns.Metadata, HeartbeatTimeout: ns.HeartbeatTimeout, Incarnation: randUint64()}
	rec.Normalize()
	svcKey := s.k.service(tenantID, rec.ID)
	var token string
	_, err = s.clientWrite(ctx, t, "create service", []string{svcKey}, func(w *writer) error {
		if w.got[svcKey] != nil {
			return store.ErrServiceExists
		}
		if w.acct.Services >= w.acct.Limits.Services {
			return &store.LimitError{Resource: store.ResourceService, Max: w.acct.Limits.Services}
		}
		deadline := w.now.Add(time.Duration(rec.HeartbeatTimeout) * time.Second)
		tok := s.minter.Mint(store.TokenKey{Tenant: tenantID, ID: rec.ID, Incarnation: rec.Incarnation}, 0, deadline)
		token = tok.String()
		hb := hbRecord{Incarnation: rec.Incarnation, Cur: token, Deadline: deadline.UnixNano()}
		if err := w.put(svcKey, rec); err != nil {
			return err
		}
		if err := w.put(s.k.heartbeat(tenantID, rec.ID), hb); err != nil {
			return err
		}
		w.ops = append(w.ops, clientv3.OpPut(s.k.due(hb.Deadline, tenantID, rec.ID), ""))
		w.acct.Services++
		w.appendEvent(func(id timeuuid.UUID) store.Event {
			return store.ServiceEvent(id, w.now, registry.ServiceJoin, rec)
		})
		return nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// UpdateService implements store.Store (spec §7.5, design item 1). A new
// timeout applies from the next heartbeat, which reads the record again:
// its condition on the record's mod revision fails after this write, and a
// node that held the service hands it back first.
func (s *Store) UpdateService(ctx context.Context, tenantID, id string, u store.ServiceUpdate) error {
	t, err := s.rectified(ctx, tenantID)
	if err != nil {
		return err
	}
	// A new heartbeat timeout needs the service back from its holder (a
	// hand-over, written to etcd); one that changes nothing, or another
	// field, does not, and must not make the holder write: it may spend
	// nothing from the write budget. The write finds out which.
	err = s.updateService(ctx, t, id, u, false)
	if errors.Is(err, errNeedsHandOver) {
		err = s.updateService(ctx, t, id, u, true)
	}
	return err
}

// errNeedsHandOver: an update would change the heartbeat timeout without
// the hand-over that changing it needs.
var errNeedsHandOver = errors.New("the heartbeat timeout changed: a hand-over is needed")

// updateService writes u, after its holder handed the service back if
// handOver.
func (s *Store) updateService(ctx context.Context, t *tenant, id string, u store.ServiceUpdate, handOver bool) error {
	tenantID := t.id
	svcKey, hbKey := s.k.service(tenantID, id), s.k.heartbeat(tenantID, id)
	return s.unheld(ctx, t, id, handOver, func(hbRev int64) error {
		t.wmu.Lock()
		defer t.wmu.Unlock()
		_, err := s.clientWrite(ctx, t, "update service", []string{svcKey, hbKey}, func(w *writer) error {
			var rec store.ServiceRecord
			if ok, err := w.getJSON(svcKey, &rec); err != nil {
				return err
			} else if !ok {
				return &store.NotFoundError{Kind: store.KindService, Key: id}
			}
			updated, changed := rec.Apply(u)
			if !changed {
				return nil
			}
			if hbRev >= 0 {
				if err := w.unheld(hbKey, hbRev); err != nil {
					return err
				}
			} else if updated.HeartbeatTimeout != rec.HeartbeatTimeout {
				return errNeedsHandOver
			}
			if err := w.put(svcKey, updated); err != nil {
				return err
			}
			w.appendEvent(func(eid timeuuid.UUID) store.Event {
				return store.ServiceEvent(eid, w.now, registry.ServiceUpdate, updated)
			})
			return nil
		})
		return err
	})
}

// errHeldAgain: a node took hold of a service between its hand-over and
// the write that needed it.
var errHeldAgain = errors.New("held again")

// unheld runs write, if need, once no live node holds the service (the
// holder handed it back: heartbeat.go), with the heartbeat key's mod
// revision then (0 if it is missing); else with -1. write returns
// errHeldAgain if the key moved since: a node took hold again, so the
// hand-over is asked again.
func (s *Store) unheld(ctx context.Context, t *tenant, id string, need bool, write func(hbRev int64) error) error {
	if !need {
		return write(-1)
	}
	for range maxAttempts {
		rev, err := s.unhold(ctx, t, id)
		if err != nil {
			return err
		}
		if err := write(rev); !errors.Is(err, errHeldAgain) {
			return err
		}
	}
	return fmt.Errorf("%w: service %s kept being taken hold of", store.ErrUnavailable, id)
}

// unhold makes sure no live node holds the service, and returns the mod
// revision of its heartbeat key then (0 if it is missing). Getting it back
// from a holder writes to etcd (this node's release, or the other's
// hand-over and its request): with the tenant's write budget spent, as
// this node last saw it, the write that needs it is refused first
// (refuseEmptyBudget), or a client could make those writes, and a
// heartbeat take the service back, again and again.
func (s *Store) unhold(ctx context.Context, t *tenant, id string) (int64, error) {
	tenantID := t.id
	for range 10 {
		resp, err := s.read(ctx, "read heartbeat state", clientv3.OpGet(s.k.heartbeat(tenantID, id)))
		if err != nil {
			return 0, err
		}
		kv := first(resp.Responses[0])
		if kv == nil {
			return 0, nil
		}
		var hb hbRecord
		if err := json.Unmarshal(kv.Value, &hb); err != nil {
			return 0, fmt.Errorf("heartbeat state of %s: %w", id, err)
		}
		switch {
		case hb.Holder == "":
			return kv.ModRevision, nil
		case hb.Holder == s.nodeID:
			if err := s.refuseEmptyBudget(t); err != nil {
				return 0, err
			}
			if err := s.release(ctx, tenantID, id, asker{}); err != nil {
				return 0, err
			}
		default:
			alive, err := s.holderAlive(ctx, hb)
			if err != nil {
				return 0, err
			}
			if !alive {
				return kv.ModRevision, nil
			}
			if err := s.refuseEmptyBudget(t); err != nil {
				return 0, err
			}
			if err := s.handOver(ctx, tenantID, id, hb, false); err != nil {
				return 0, err
			}
		}
	}
	return 0, fmt.Errorf("%w: service %s kept being taken hold of", store.ErrUnavailable, id)
}

// unheld makes the write conditional on the heartbeat key's mod revision
// being rev, as unhold left it.
func (w *writer) unheld(hbKey string, rev int64) error {
	var got int64
	if kv := w.got[hbKey]; kv != nil {
		got = kv.ModRevision
	}
	if got != rev {
		return errHeldAgain
	}
	w.cmps = append(w.cmps, clientv3.Compare(clientv3.ModRevision(hbKey), "=", rev))
	return nil
}

// DeleteService implements store.Store (spec §7.6); the outstanding token
// goes with the service. A node holding the service hands it back first,
// and the write is conditional on the heartbeat key as it left it, so that
// no node answers a heartbeat of the deleted service from memory, and the
// deadline index entry deleted is the current one.
func (s *Store) DeleteService(ctx context.Context, tenantID, id string) error {
	t, err := s.rectified(ctx, tenantID)
	if err != nil {
		return err
	}
	svcKey, hbKey := s.k.service(tenantID, id), s.k.heartbeat(tenantID, id)
	return s.unheld(ctx, t, id, true, func(hbRev int64) error {
		t.wmu.Lock()
		defer t.wmu.Unlock()
		_, err := s.clientWrite(ctx, t, "delete service", []string{svcKey, hbKey}, func(w *writer) error {
			var rec store.ServiceRecord
			if ok, err := w.getJSON(svcKey, &rec); err != nil {
				return err
			} else if !ok {
				return &store.NotFoundError{Kind: store.KindService, Key: id}
			}
			if err := w.unheld(hbKey, hbRev); err != nil {
				return err
			}
			w.del(svcKey)
			if hbkv := w.got[hbKey]; hbkv != nil {
				var hb hbRecord
				if err := json.Unmarshal(hbkv.Value, &hb); err != nil {
					return fmt.Errorf("heartbeat state of %s: %w", id, err)
				}
				w.del(hbKey)
				w.del(s.k.due(hb.Deadline, tenantID, id))
			}
			w.acct.Services--
			w.appendEvent(func(eid timeuuid.UUID) store.Event {
				return store.ServiceEvent(eid, w.now, registry.ServiceRemove, rec)
			})
			return nil
		})
		return err
	})
}

// Service implements store.Store.
func (s *Store) Service(ctx context.Context, tenantID, id string) (registry.Service, error) {
	if err := s.rectify(ctx, tenantID); err != nil {
		return registry.Service{}, err
	}
	resp, err := s.read(ctx, "read service", clientv3.OpGet(s.k.service(tenantID, id)), clientv3.OpGet(s.k.heartbeat(tenantID, id)))
	if err != nil {
		return registry.Service{}, err
	}
	kv := first(resp.Responses[0])
	if kv == nil {
		return registry.Service{}, &store.NotFoundError{Kind: store.KindService, Key: id}
	}
	var rec store.ServiceRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return registry.Service{}, fmt.Errorf("service %s: %w", id, err)
	}
	var hb hbRecord
	if hkv := first(resp.Responses[1]); hkv != nil {
		if err := json.Unmarshal(hkv.Value, &hb); err != nil {
			return registry.Service{}, fmt.Errorf("heartbeat state of %s: %w", id, err)
		}
	}
	return rec.Service(s.lastSeen(tenantID, rec, hb)), nil
}

// lastSeen is the time of the service's last heartbeat: from this node's
// memory if it holds the service, else as of the heartbeat key's last
// write (at most the slack behind, if another node holds it).
func (s *Store) lastSeen(tenantID string, rec store.ServiceRecord, hb hbRecord) time.Time {
	if v := s.hb.held(tenantID, rec.ID); v != nil && v.incarnation == rec.Incarnation {
		return time.UnixMilli(v.lastSeen)
	}
	if hb.Incarnation != rec.Incarnation {
		return time.Time{}
	}
	return hb.lastSeen()
}

// Services implements store.Store (spec §7.2): the services and their
// heartbeat state, read at the revision of the account that gives the
// page's feed marker.
func (s *Store) Services(ctx context.Context, tenantID string, q store.ServiceQuery) (store.Page[registry.Service], error) {
	if err := s.rectify(ctx, tenantID); err != nil {
		return store.Page[registry.Service]{}, err
	}
	for {
		page, err := s.services(ctx, tenantID, q)
		if errors.Is(err, errCompacted) {
			continue
		}
		return page, err
	}
}

func (s *Store) services(ctx context.Context, tenantID string, q store.ServiceQuery) (store.Page[registry.Service], error) {
	var page store.Page[registry.Service]
	prefix := s.k.services(tenantID)
	start, end := prefix+q.Marker, prefixEnd(prefix)
	batch := int64(q.Limit + 1)
	if q.Tag != nil {
		batch = max(batch, 256)
	}
	var recs []store.ServiceRecord
	var rev int64
	for {
		ops := []clientv3.Op{clientv3.OpGet(start, clientv3.WithRange(end), clientv3.WithLimit(batch), clientv3.WithRev(rev))}
		if rev == 0 {
			ops = append(ops, clientv3.OpGet(s.k.account(tenantID)))
		}
		resp, err := s.read(ctx, "list services", ops...)
		if err != nil {
			return page, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
			acct, err := decodeAccount(tenantID, first(resp.Responses[1]))
			if err != nil {
				return page, err
			}
			page.Marker = acct.FeedMarker()
		}
		rr := resp.Responses[0].GetResponseRange()
		done := false
		for _, kv := range rr.Kvs {
			var r store.ServiceRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return page, fmt.Errorf("service %q: %w", kv.Key, err)
			}
			if q.Tag != nil && !slices.Contains(r.Tags, *q.Tag) {
				continue
			}
			if len(recs) == q.Limit {
				page.Next = r.ID
				done = true
				break
			}
			recs = append(recs, r)
		}
		if done || !rr.More || len(rr.Kvs) == 0 {
			break
		}
		start = string(rr.Kvs[len(rr.Kvs)-1].Key) + "\x00"
	}
	page.Values = make([]registry.Service, len(recs))
	if len(recs) == 0 {
		return page, nil
	}
	// The heartbeat state of the page's services, at the same revision.
	hbs := map[string]hbRecord{}
	hbPrefix := s.k.heartbeats(tenantID)
	hstart, hend := hbPrefix+recs[0].ID, hbPrefix+recs[len(recs)-1].ID+"\x00"
	for {
		resp, err := s.read(ctx, "list heartbeats", clientv3.OpGet(hstart, clientv3.WithRange(hend), clientv3.WithRev(rev), clientv3.WithLimit(1000)))
		if err != nil {
			return page, err
		}
		rr := resp.Responses[0].GetResponseRange()
		for _, kv := range rr.Kvs {
			var hb hbRecord
			if err := json.Unmarshal(kv.Value, &hb); err != nil {
				return page, fmt.Errorf("heartbeat state %q: %w", kv.Key, err)
			}
			hbs[string(kv.Key[len(hbPrefix):])] = hb
		}
		if !rr.More || len(rr.Kvs) == 0 {
			break
		}
		hstart = string(rr.Kvs[len(rr.Kvs)-1].Key) + "\x00"
	}
	for i, r := range recs {
		page.Values[i] = r.Service(s.lastSeen(tenantID, r, hbs[r.ID]))
	}
	return page, nil
}

// decodeService decodes a service record and its heartbeat state.
func decodeService(svc, hb *mvccpb.KeyValue) (store.ServiceRecord, hbRecord, error) {
	var rec store.ServiceRecord
	var h hbRecord
	if err := json.Unmarshal(svc.Value, &rec); err != nil {
		return rec, h, fmt.Errorf("service %q: %w", svc.Key, err)
	}
	if hb != nil {
		var err error
		if h, err = decodeHeartbeat(hb); err != nil {
			return rec, h, err
		}
	}
	return rec, h, nil
}

// decodeHeartbeat decodes a heartbeat key.
func decodeHeartbeat(hb *mvccpb.KeyValue) (hbRecord, error) {
	var h hbRecord
	if err := json.Unmarshal(hb.Value, &h); err != nil {
		return h, fmt.Errorf("heartbeat state %q: %w", hb.Key, err)
	}
	return h, nil
}
