package etcdstore

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/svcreg/svcreg/internal/timeuuid"
)

// The key layout under the store's prefix P. T is the tenant, path-escaped
// so that it holds no slash.
//
//	P meta/secret             heartbeat token MAC key, shared by every node
//	P meta/tail               the 62 bits after the time in event ids
//	P node/<node>             one per running node, on the node's lease
//	P acct/<T>                the account: created, limits, head, pruned, counts
//	P svc/<T>/<id>            a service (store.ServiceRecord)
//	P hb/<T>/<id>             its heartbeat state (hbRecord)
//	P due/<deadline>/<T>/<id> deadline index: 16 hex digits of Unix ns
//	P rel/<node>/<T>/<id>     a request to the node holding a service to hand it back
//	P cfg/<T>/<id>            a configuration value
//	P ev/<T>/<event>          an event: 32 hex digits of its sortable id
//	P tok/<hash>              an identity token (store.TokenInfo)
//	P devuser/<user>          the tenant of a --dev user
//	P devtenant/<tenant>      the --dev user holding a tenant
//	P revoked/<user>          a user's tokens revoked (store.Revocation)
//
// Every write that appends an event also writes the account (its head), so
// the account's mod revision orders a tenant's event-appending writes, and
// the one etcd watch each node keeps is on the acct/ prefix.
type keys struct{ p string }

func (k keys) secret() string          { return k.p + "meta/secret" }
func (k keys) tail() string            { return k.p + "meta/tail" }
func (k keys) authMode() string        { return k.p + "meta/auth-mode" }
func (k keys) nodes() string           { return k.p + "node/" }
func (k keys) node(id string) string   { return k.p + "node/" + id }
func (k keys) accounts() string        { return k.p + "acct/" }
func (k keys) account(t string) string { return k.p + "acct/" + esc(t) }
func (k keys) services(t string) string {
	return k.p + "svc/" + esc(t) + "/"
}
func (k keys) service(t, id string) string { return k.services(t) + id }
func (k keys) heartbeats(t string) string  { return k.p + "hb/" + esc(t) + "/" }
func (k keys) heartbeat(t, id string) string {
	return k.heartbeats(t) + id
}
func (k keys) allHeartbeats() string { return k.p + "hb/" }
func (k keys) dues() string          { return k.p + "due/" }

// due is the deadline index entry of a service; deadlines sort as keys.
func (k keys) due(deadline int64, t, id string) string {
	return fmt.Sprintf("%sdue/%016x/%s/%s", k.p, uint64(deadline), esc(t), id)
}

// moveDue is the operations that move a service's deadline index entry
// from one deadline to another (none if the entry stays).
func (k keys) moveDue(from, to int64, t, id string) []clientv3.Op {
	if oldDue, newDue := k.due(from, t, id), k.due(to, t, id); oldDue != newDue {
		return []clientv3.Op{clientv3.OpDelete(oldDue), clientv3.OpPut(newDue, "")}
	}
	return nil
}

// dueThrough is the end of the range of index entries with deadlines at
// or before t.
func (k keys) dueThrough(t time.Time) string {
	return fmt.Sprintf("%sdue/%016x", k.p, uint64(t.UnixNano())+1)
}

// parseDue splits a deadline index key.
func (k keys) parseDue(key string) (deadline int64, tenant, id string, ok bool) {
	rest, found := strings.CutPrefix(key, k.p+"due/")
	if !found || len(rest) < 17 || rest[16] != '/' {
		return 0, "", "", false
	}
	d, err := strconv.ParseUint(rest[:16], 16, 64)
	if err != nil {
		return 0, "", "", false
	}
	t, id, found := strings.Cut(rest[17:], "/")
	if !found {
		return 0, "", "", false
	}
	tenant, err = url.PathUnescape(t)
	if err != nil {
		return 0, "", "", false
	}
	return int64(d), tenant, id, true
}

// parseAccount returns the tenant of an account key.
func (k keys) parseAccount(key string) (string, bool) {
	rest, found := strings.CutPrefix(key, k.p+"acct/")
	if !found {
		return "", false
	}
	t, err := url.PathUnescape(rest)
	return t, err == nil
}

// parseRevocation returns the user of a revocation key.
func (k keys) parseRevocation(key string) (string, bool) {
	rest, found := strings.CutPrefix(key, k.revocations())
	if !found {
		return "", false
	}
	u, err := url.PathUnescape(rest)
	return u, err == nil
}

// parseHeartbeat splits a heartbeat key.
func (k keys) parseHeartbeat(key string) (tenant, id string, ok bool) {
	return parseTenantID(key, k.p+"hb/")
}

// parseTenantID splits a key made of prefix, an escaped tenant, a slash
// and an id.
func parseTenantID(key, prefix string) (tenant, id string, ok bool) {
	rest, found := strings.CutPrefix(key, prefix)
	if !found {
		return "", "", false
	}
	t, id, found := strings.Cut(rest, "/")
	if !found {
		return "", "", false
	}
	tenant, err := url.PathUnescape(t)
	return tenant, id, err == nil
}

// releases is the prefix of the hand-over requests to a node.
func (k keys) releases(node string) string { return k.p + "rel/" + node + "/" }

func (k keys) release(node, t, id string) string { return k.releases(node) + esc(t) + "/" + id }

// parseRelease splits a hand-over request key.
func (k keys) parseRelease(node, key string) (tenant, id string, ok bool) {
	return parseTenantID(key, k.releases(node))
}

func (k keys) configs(t string) string        { return k.p + "cfg/" + esc(t) + "/" }
func (k keys) config(t, id string) string     { return k.configs(t) + id }
func (k keys) events(t string) string         { return k.p + "ev/" + esc(t) + "/" }
func (k keys) token(hash [32]byte) string     { return k.p + "tok/" + hex.EncodeToString(hash[:]) }
func (k keys) devUser(user string) string     { return k.p + "devuser/" + esc(user) }
func (k keys) devTenant(tenant string) string { return k.p + "devtenant/" + tenant }
func (k keys) revocations() string            { return k.p + "revoked/" }
func (k keys) revocation(user string) string  { return k.revocations() + esc(user) }

// event is the key of an event: its id in the API's order.
func (k keys) event(t string, id timeuuid.UUID) string {
	key := id.Key()
	return k.events(t) + hex.EncodeToString(key[:])
}

// parseEventID decodes the id from an event key.
func (k keys) parseEventID(t, key string) (timeuuid.UUID, bool) {
	h, found := strings.CutPrefix(key, k.events(t))
	if !found || len(h) != 32 {
		return timeuuid.UUID{}, false
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return timeuuid.UUID{}, false
	}
	return timeuuid.FromKey(b), true
}

// esc makes a name safe as one key segment.
func esc(s string) string { return url.PathEscape(s) }

// prefixEnd is the end of the range of keys beginning with p.
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}
