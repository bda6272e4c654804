package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/svcreg/svcreg/server/store"
)

// PutToken implements store.Identity.
func (s *Store) PutToken(ctx context.Context, hash [32]byte, t store.TokenInfo) error {
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bTokens).Put(hash[:], raw) })
}

// Token implements store.Identity.
func (s *Store) Token(ctx context.Context, hash [32]byte) (store.TokenInfo, error) {
	var t store.TokenInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bTokens).Get(hash[:])
		if raw == nil {
			return store.ErrTokenUnknown
		}
		return json.Unmarshal(raw, &t)
	})
	return t, err
}

// DeleteToken implements store.Identity.
func (s *Store) DeleteToken(ctx context.Context, hash [32]byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bTokens).Delete(hash[:]) })
}

// DevTenant implements store.Identity: "dev" gets 7777; any other user a
// tenant in 100000..999999 derived from its name, probing past collisions,
// and kept so that it never changes.
func (s *Store) DevTenant(ctx context.Context, username string) (string, error) {
	if username == "dev" {
		return "7777", nil
	}
	key := []byte("user/" + username)
	var tenant string
	err := s.db.View(func(tx *bolt.Tx) error {
		tenant = string(tx.Bucket(bDevTenants).Get(key))
		return nil
	})
	if err != nil || tenant != "" {
		return tenant, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bDevTenants)
		if v := b.Get(key); v != nil {
			tenant = string(v)
			return nil
		}
		h := fnv.New32a()
		h.Write([]byte(username))
		n := h.Sum32() % store.DevTenants
		for i := 0; ; i++ {
			if i == store.DevTenants {
				return store.ErrDevTenantsTaken
			}
			tenant = strconv.Itoa(store.DevTenantFirst + int(n))
			if b.Get([]byte("tenant/"+tenant)) == nil {
				break
			}
			n = (n + 1) % store.DevTenants
		}
		if err := b.Put(key, []byte(tenant)); err != nil {
			return err
		}
		return b.Put([]byte("tenant/"+tenant), []byte(username))
	})
	if err != nil {
		return "", err
	}
	return tenant, nil
}

// RevokeUser implements store.Identity.
func (s *Store) RevokeUser(ctx context.Context, user string, r store.Revocation) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRevoked)
		var was store.Revocation
		if raw := b.Get([]byte(user)); raw != nil && json.Unmarshal(raw, &was) == nil {
			r = r.Merge(was)
		}
		r = r.Pruned(s.now())
		raw, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(user), raw)
	})
}

// Revocations implements store.Identity.
func (s *Store) Revocations(ctx context.Context) (map[string]store.Revocation, error) {
	now := s.now()
	out := map[string]store.Revocation{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRevoked).ForEach(func(k, v []byte) error {
			var r store.Revocation
			if err := json.Unmarshal(v, &r); err != nil {
				s.log.Warn("a user's token revocation does not decode; left out, and deleted with the expired ones", "user", fmt.Sprintf("%q", k), "err", err)
				return nil
			}
			if r = r.Pruned(now); !r.IsZero() {
				out[string(k)] = r
			}
			return nil
		})
	})
	return out, err
}

// pruneTokens deletes the identity tokens that have expired, and the
// users' revocations past their Until.
func (s *Store) pruneTokens() error {
	now := s.now()
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bTokens).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var t store.TokenInfo
			if err := json.Unmarshal(v, &t); err != nil || !now.Before(t.Expires) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		c = tx.Bucket(bRevoked).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var r store.Revocation
			if err := json.Unmarshal(v, &r); err != nil || !now.Before(r.Until()) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// AuthMode implements store.Identity.
func (s *Store) AuthMode(ctx context.Context, mode string) (string, error) {
	var recorded string
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kAuthMode); v != nil {
			recorded = string(v)
			return nil
		}
		recorded = mode
		return meta.Put(kAuthMode, []byte(mode))
	})
	return recorded, err
}
