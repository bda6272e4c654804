package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/server/store"
)

// PutToken implements store.Identity. The token's key lives on a lease that
// ends a little after the token expires, so etcd deletes expired tokens by
// itself; tokens expiring in the same ten minutes share a lease.
//
// The put is hedged (hedge.go), and conditional on the key being new: a
// token's key is its hash, which no other token has, so a send that finds
// the key there found its twin's commit, and one that lands late, after
// the token was revoked (DeleteToken leaves a tombstone for as long as
// the lease lives) or its lease ended, commits nothing.
func (s *Store) PutToken(ctx context.Context, hash [32]byte, t store.TokenInfo) error {
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	key := s.k.token(hash)
	for attempt := 0; ; attempt++ {
		lease, err := s.tokenLeases.get(ctx, s, t.Expires)
		if err != nil {
			return err
		}
		_, err = s.txnWithin(ctx, s.opts.RequestTimeout, hedged, "store token",
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
			[]clientv3.Op{clientv3.OpPut(key, string(raw), clientv3.WithLease(lease))}, nil)
		if err == nil || attempt > 0 || !isLeaseNotFound(err) {
			return err
		}
		s.tokenLeases.drop(lease)
	}
}

// revokedToken is a revoked token's tombstone: a token that expired long
// ago, which a node of any version refuses.
var revokedToken = func() string {
	raw, err := json.Marshal(store.TokenInfo{})
	if err != nil {
		panic(err)
	}
	return string(raw)
}()

// Token implements store.Identity.
func (s *Store) Token(ctx context.Context, hash [32]byte) (store.TokenInfo, error) {
	var t store.TokenInfo
	resp, err := s.read(ctx, "read token", clientv3.OpGet(s.k.token(hash)))
	if err != nil {
		return t, err
	}
	kv := first(resp.Responses[0])
	if kv == nil || string(kv.Value) == revokedToken {
		return t, store.ErrTokenUnknown
	}
	return t, json.Unmarshal(kv.Value, &t)
}

// DeleteToken implements store.Identity. It replaces the token with a
// tombstone on the token's lease rather than delete its key, so that a
// send of the token's put that lands late finds the key and commits
// nothing (PutToken); etcd deletes the tombstone with the lease.
func (s *Store) DeleteToken(ctx context.Context, hash [32]byte) error {
	key := s.k.token(hash)
	return s.again(ctx, "revoke token",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)},
		clientv3.OpPut(key, revokedToken, clientv3.WithIgnoreLease()))
}

// RevokeUser implements store.Identity. The record lives on the lease of
// the tokens expiring at r.Until() (PutToken's), so that etcd deletes it by
// itself once they have. It is merged with the record there in a
// transaction conditional on that record's revision, sent again if another
// write came between.
func (s *Store) RevokeUser(ctx context.Context, user string, r store.Revocation) error {
	key := s.k.revocation(user)
	for attempt := 0; ; attempt++ {
		resp, err := s.read(ctx, "read user revocation", clientv3.OpGet(key))
		if err != nil {
			return err
		}
		merged, cmp := r, clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if kv := first(resp.Responses[0]); kv != nil {
			var was store.Revocation
			if json.Unmarshal(kv.Value, &was) == nil {
				if merged = r.Merge(was).Pruned(s.now()); merged.Equal(was) {
					return nil
				}
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
		}
		raw, err := json.Marshal(merged)
		if err != nil {
			return err
		}
		lease, err := s.tokenLeases.get(ctx, s, merged.Until())
		if err != nil {
			return err
		}
		// Hedged: a send that commits makes its twins' compare fail, and
		// the read again finds the record merged.
		put, err := s.txnWithin(ctx, s.opts.RequestTimeout, hedged, "revoke user",
			[]clientv3.Cmp{cmp}, []clientv3.Op{clientv3.OpPut(key, string(raw), clientv3.WithLease(lease))}, nil)
		switch {
		case err == nil && put.Succeeded:
			return nil
		case err != nil && isLeaseNotFound(err):
			s.tokenLeases.drop(lease)
		case err != nil:
			return err
		}
		if attempt >= 8 {
			return fmt.Errorf("revoke user %q: the record kept changing", user)
		}
	}
}

// Revocations implements store.Identity.
func (s *Store) Revocations(ctx context.Context) (map[string]store.Revocation, error) {
	resp, err := s.read(ctx, "read user revocations", clientv3.OpGet(s.k.revocations(), clientv3.WithPrefix()))
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := map[string]store.Revocation{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		user, ok := s.k.parseRevocation(string(kv.Key))
		var r store.Revocation
		err := errors.New("not a revocation key")
		if ok {
			err = json.Unmarshal(kv.Value, &r)
		}
		if err != nil {
			s.log.Warn("a user's token revocation does not decode; left out (its lease deletes it)", "key", fmt.Sprintf("%q", kv.Key), "err", err)
			continue
		}
		if r = r.Pruned(now); !r.IsZero() {
			out[user] = r
		}
	}
	return out, nil
}

// DevTenant implements store.Identity as the embedded store does: "dev"
// gets 7777; any other user a tenant in 100000..999999 derived from its
// name, probing past collisions, claimed in a transaction so that two nodes
// never give one tenant to two users, and kept so that it never changes.
func (s *Store) DevTenant(ctx context.Context, username string) (string, error) {
	if username == "dev" {
		return "7777", nil
	}
	userKey := s.k.devUser(username)
	h := fnv.New32a()
	h.Write([]byte(username))
	n := h.Sum32() % store.DevTenants
	for range store.DevTenants {
		tenant := strconv.Itoa(store.DevTenantFirst + int(n))
		tenantKey := s.k.devTenant(tenant)
		// Hedged: a claim that committed at one send is found by the
		// others' read of the user's key.
		resp, err := s.txnWithin(ctx, s.opts.RequestTimeout, hedged, "claim dev tenant",
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.CreateRevision(userKey), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(tenantKey), "=", 0),
			},
			[]clientv3.Op{clientv3.OpPut(userKey, tenant), clientv3.OpPut(tenantKey, username)},
			[]clientv3.Op{clientv3.OpGet(userKey)})
		if err != nil {
			return "", err
		}
		if resp.Succeeded {
			return tenant, nil
		}
		if kv := first(resp.Responses[0]); kv != nil {
			return string(kv.Value), nil
		}
		n = (n + 1) % store.DevTenants
	}
	return "", store.ErrDevTenantsTaken
}

// tokenLeases hands out the leases identity tokens live on, one per ten
// minutes of expiry.
type tokenLeases struct {
	mu     sync.Mutex
	leases map[int64]clientv3.LeaseID // by expiry bucket (Unix s)
}

const tokenLeaseBucket = 10 * 60 // seconds

func (l *tokenLeases) get(ctx context.Context, s *Store, expires time.Time) (clientv3.LeaseID, error) {
	bucket := (expires.Unix()/tokenLeaseBucket + 1) * tokenLeaseBucket
	l.mu.Lock()
	defer l.mu.Unlock()
	if id, ok := l.leases[bucket]; ok {
		return id, nil
	}
	// Leases of buckets that ended are gone in etcd by now.
	now := s.now().Unix()
	for b := range l.leases {
		if b < now {
			delete(l.leases, b)
		}
	}
	ttl := bucket - now + 60
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	id, err := s.hedgedGrant(cctx, max(ttl, 60))
	if err != nil {
		return 0, s.fail(ctx, "grant token lease", err)
	}
	if l.leases == nil {
		l.leases = map[int64]clientv3.LeaseID{}
	}
	l.leases[bucket] = id
	return id, nil
}

func (l *tokenLeases) drop(id clientv3.LeaseID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for b, x := range l.leases {
		if x == id {
			delete(l.leases, b)
		}
	}
}

func isLeaseNotFound(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }

// AuthMode implements store.Identity: the first node to start records
// its mode, in a transaction, and every node reads what it recorded.
func (s *Store) AuthMode(ctx context.Context, mode string) (string, error) {
	created, kv, err := s.putIfAbsent(ctx, "record the auth mode", s.k.authMode(), mode)
	switch {
	case err != nil:
		return "", err
	case created != 0:
		return mode, nil
	case kv != nil:
		return string(kv.Value), nil
	}
	return "", fmt.Errorf("etcd store under %q: the auth mode key vanished", s.opts.Prefix)
}
