// Package store defines what the registry server keeps — accounts, services
// and their heartbeat tokens, configuration values and the events feed — as
// the Store interface that the embedded (bbolt) and etcd stores implement.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/svcreg/svcreg/internal/timeuuid"
	"github.com/svcreg/svcreg/registry"
)

// Store keeps the registry's state. Every method that changes state commits
// the change and its event together, durably, before it returns. Methods are
// safe for concurrent use.
//
// Services past their deadline are timed out by the store itself: lazily,
// by the reads and writes spec §8.3 lists (Service, Services, Events and the
// service writes), before they read, and by the reaper, run by Run.
//
// Account creates the tenant's account on first use, and the server calls
// it for every request (spec §3.4: no request sees a tenant that does not
// exist). The other methods that take a tenant create it too, except
// Heartbeat: a heartbeat to a tenant without an account finds no service.
type Store interface {
	// Account returns the tenant's account, creating it on first use
	// (spec §3.4). With several server nodes its Head may lag behind events
	// other nodes committed just before; Head does not.
	Account(ctx context.Context, tenant string) (Account, error)
	// Head returns the id of the newest event committed for the tenant
	// before the call, zero if none: what a marker handed out anywhere can
	// be at most.
	Head(ctx context.Context, tenant string) (timeuuid.UUID, error)

	// CreateService stores a new service, appends service.join and returns
	// its first heartbeat token.
	CreateService(ctx context.Context, tenant string, s NewService) (token string, err error)
	// UpdateService changes the fields u sets; if that changes anything it
	// appends service.update.
	UpdateService(ctx context.Context, tenant, id string, u ServiceUpdate) error
	// DeleteService removes the service, invalidates its token and appends
	// service.remove.
	DeleteService(ctx context.Context, tenant, id string) error
	// Heartbeat consumes token and returns the service's next token.
	// Repeating the token just consumed returns the same next token again.
	Heartbeat(ctx context.Context, tenant, id, token string) (string, error)
	// Service returns one service, after timing out the tenant's services
	// past their deadline.
	Service(ctx context.Context, tenant, id string) (registry.Service, error)
	// Services returns a page of services ordered by id in byte order,
	// after timing out the tenant's services past their deadline.
	Services(ctx context.Context, tenant string, q ServiceQuery) (Page[registry.Service], error)

	// SetConfig stores a value and, if it changed, appends
	// configuration_value.update.
	SetConfig(ctx context.Context, tenant, id, value string) error
	// DeleteConfig removes a value and appends configuration_value.remove.
	DeleteConfig(ctx context.Context, tenant, id string) error
	// Config returns one value.
	Config(ctx context.Context, tenant, id string) (registry.ConfigValue, error)
	// Configs returns a page of values whose id begins with q.Prefix, ordered
	// by id in byte order.
	Configs(ctx context.Context, tenant string, q ConfigQuery) (Page[registry.ConfigValue], error)

	// Events returns events at or after q.From in commit order, after
	// timing out the tenant's services past their deadline (one
	// service.timeout each, exactly once however many readers race).
	Events(ctx context.Context, tenant string, q EventQuery) (EventPage, error)
	// Changed returns a channel that is closed when an event is next
	// committed for the tenant. Take it before reading, then wait on it.
	Changed(ctx context.Context, tenant string) (<-chan struct{}, error)

	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error
	// Run runs the store's background work (the reaper, retention, and
	// whatever the store needs) until ctx is done.
	Run(ctx context.Context) error
	// Close releases the store. Call it after Run has returned.
	Close() error
}

// Identity keeps the identity endpoint's state: issued API tokens and the
// tenants of --dev users.
type Identity interface {
	// PutToken records an issued token under the hash of its text.
	PutToken(ctx context.Context, hash [32]byte, t TokenInfo) error
	// Token returns a token's record, or ErrTokenUnknown.
	Token(ctx context.Context, hash [32]byte) (TokenInfo, error)
	// DeleteToken revokes a token.
	DeleteToken(ctx context.Context, hash [32]byte) error
	// DevTenant returns the numeric tenant of a --dev user, allocating one on
	// first use; the same user always gets the same tenant.
	DevTenant(ctx context.Context, username string) (string, error)
	// RevokeUser records what a user's changes revoked, until r.Until()
	// (when every token it covers has expired). A record kept for the user
	// already is merged (Revocation.Merge).
	RevokeUser(ctx context.Context, user string, r Revocation) error
	// Revocations returns the users' revocations whose Until has not
	// passed.
	Revocations(ctx context.Context) (map[string]Revocation, error)
	// AuthMode records mode (AuthDev or AuthUsers) as how the registry's
	// users are authenticated, if none is recorded yet, and returns the
	// one recorded: a server started in the other mode must not serve
	// its tenants.
	AuthMode(ctx context.Context, mode string) (string, error)
}

// The modes AuthMode records.
const (
	AuthDev   = "dev"   // --dev: any username, API key "dev"
	AuthUsers = "users" // --users FILE
)

// AuthModeError is a store opened to be served in one auth mode whose
// registry was served in the other (AuthMode).
type AuthModeError struct{ Recorded, Wanted string }

func (e *AuthModeError) Error() string {
	return fmt.Sprintf("the registry was served with auth mode %q, not %q", e.Recorded, e.Wanted)
}

// CheckAuthMode records mode as id's (AuthMode) and returns an
// *AuthModeError if the other one is recorded; both stores call it as they
// open, when given a mode.
func CheckAuthMode(ctx context.Context, id Identity, mode string) error {
	recorded, err := id.AuthMode(ctx, mode)
	if err == nil && recorded != mode {
		err = &AuthModeError{Recorded: recorded, Wanted: mode}
	}
	return err
}

// MaxTokenTTL is the longest lifetime of an issued token. A revocation is
// kept that long after it was made, so that it covers every token issued
// before it.
const MaxTokenTTL = 30 * 24 * time.Hour

// Revocation is what a user's changes revoked, each part the tokens
// issued before (or at) a time. A zero time revokes nothing.
type Revocation struct {
	// Tenants: for each tenant the user left (removed, or moved to
	// another tenant), its tokens of that tenant.
	Tenants map[string]time.Time `json:"tenants,omitempty"`
	// Retired: for each credential print the user's API key or password
	// hash had before it was replaced or removed, the tokens carrying it,
	// so that the credential coming back does not bring them back.
	Retired map[string]time.Time `json:"retired,omitempty"`
	// Printless: the tokens that record no credential print (of earlier
	// releases), when a credential of the user changed.
	Printless time.Time `json:"printless,omitzero"`
}

// Until is when the revocation may be forgotten: every token it covers
// has expired by then.
func (r Revocation) Until() time.Time {
	last := r.Printless
	for _, at := range r.Tenants {
		last = later(last, at)
	}
	for _, at := range r.Retired {
		last = later(last, at)
	}
	return last.Add(MaxTokenTTL)
}

// Covers reports whether r revokes the token t. A token that does not
// record when it was issued (of an earlier release) counts as issued
// before a time if it expires before that time plus MaxTokenTTL.
func (r Revocation) Covers(t TokenInfo) bool {
	before := func(at time.Time) bool {
		switch {
		case at.IsZero():
			return false
		case !t.Issued.IsZero():
			return !t.Issued.After(at)
		default:
			return !t.Expires.After(at.Add(MaxTokenTTL))
		}
	}
	printless := t.KeyPrint == "" && t.PasswordPrint == ""
	return before(r.Tenants[t.Tenant]) || printless && before(r.Printless) ||
		t.KeyPrint != "" && before(r.Retired[t.KeyPrint]) || t.PasswordPrint != "" && before(r.Retired[t.PasswordPrint])
}

// Merge is the revocation that covers both r and o: the later of each
// time. It shares no map with r or o.
func (r Revocation) Merge(o Revocation) Revocation {
	return Revocation{Tenants: mergeTimes(r.Tenants, o.Tenants), Retired: mergeTimes(r.Retired, o.Retired),
		Printless: later(r.Printless, o.Printless)}
}

// Equal reports whether r and o are the same revocation.
func (r Revocation) Equal(o Revocation) bool {
	same := func(a, b map[string]time.Time) bool {
		return maps.EqualFunc(a, b, time.Time.Equal)
	}
	return r.Printless.Equal(o.Printless) && same(r.Tenants, o.Tenants) && same(r.Retired, o.Retired)
}

// Pruned is r without the parts that can cover no live token at now:
// those made MaxTokenTTL or more before it.
func (r Revocation) Pruned(now time.Time) Revocation {
	live := func(at time.Time) bool { return now.Before(at.Add(MaxTokenTTL)) }
	keep := func(m map[string]time.Time) map[string]time.Time {
		var out map[string]time.Time
		for k, at := range m {
			if live(at) {
				if out == nil {
					out = map[string]time.Time{}
				}
				out[k] = at
			}
		}
		return out
	}
	out := Revocation{Tenants: keep(r.Tenants), Retired: keep(r.Retired)}
	if live(r.Printless) {
		out.Printless = r.Printless
	}
	return out
}

// IsZero reports whether r revokes nothing.
func (r Revocation) IsZero() bool { return r.Equal(Revocation{}) }

// mergeTimes is the union of a and b, the later time for a key in both;
// nil if both are empty.
func mergeTimes(a, b map[string]time.Time) map[string]time.Time {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := maps.Clone(a)
	if out == nil {
		out = map[string]time.Time{}
	}
	for k, at := range b {
		out[k] = later(out[k], at)
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TokenInfo is what the identity endpoint knows of an issued token.
type TokenInfo struct {
	User    string    `json:"user"`
	Tenant  string    `json:"tenant"`
	Expires time.Time `json:"expires"`
	// KeyPrint or PasswordPrint identifies the credential the token was
	// issued with, the user's API key or password hash then ("" for the
	// other): a token whose credential has since been replaced or removed
	// is refused, restarts included. Short, and salted with the user's
	// name: not a way to guess a key.
	KeyPrint      string `json:"key_print,omitempty"`
	PasswordPrint string `json:"password_print,omitempty"`
	// Issued is when the token was issued; zero for a token of a release
	// that did not record it.
	Issued time.Time `json:"issued,omitzero"`
}

// Account is a tenant's account (spec §3.4).
type Account struct {
	Tenant    string
	CreatedAt time.Time
	Limits    Limits
	// Head is the id of the newest event ever appended, zero if none.
	Head timeuuid.UUID
}

// Limits caps the live objects of an account (spec §10.2).
type Limits struct {
	Services     int `json:"service"`
	ConfigValues int `json:"configuration_value"`
}

// DefaultLimits are the limits of a new account.
var DefaultLimits = Limits{Services: 200, ConfigValues: 1000}

// DefaultMaxEvents is the most events an account keeps by default: past
// it, the oldest are deleted as retention deletes them, so that one account
// cannot fill the disk.
const DefaultMaxEvents = 10000

// DefaultMaxEventBytes is the most bytes of events an account keeps by
// default: about 32,000 events of a typical 1 KB, or 1,200 of the largest
// (a service with 5,000 bytes of metadata that JSON escapes six-fold).
const DefaultMaxEventBytes = 32 << 20

// NewService is a service to create.
type NewService struct {
	ID               string
	Tags             []string
	Metadata         map[string]string
	HeartbeatTimeout int
}

// ServiceUpdate changes the fields that are set; a set Tags or Metadata
// replaces the stored value completely.
type ServiceUpdate struct {
	Tags             *[]string
	Metadata         *map[string]string
	HeartbeatTimeout *int
}

// ServiceQuery selects a page of services.
type ServiceQuery struct {
	Marker string // first id to include; "" for the beginning
	Limit  int
	Tag    *string // only services carrying this tag
}

// ConfigQuery selects a page of configuration values.
type ConfigQuery struct {
	Prefix string
	Marker string
	Limit  int
}

// Page is one page of a list.
type Page[T any] struct {
	Values []T
	// Next is the id of the first item not included, "" when there is none.
	Next string
	// Marker is the feed position of the read: every change committed after
	// it appears in the events feed from this marker (the X-Registry-Marker
	// header).
	Marker timeuuid.UUID
}

// EventQuery selects a page of events.
type EventQuery struct {
	// From is the first id to include (inclusive).
	From timeuuid.UUID
	// CheckExpired asks for ErrMarkerExpired when retention has deleted an
	// event after From; the default window does not ask.
	CheckExpired bool
	Limit        int
	// MaxBytes, if not zero, ends the page before the event that would
	// take its events' JSON past it (a page holds at least one event).
	MaxBytes int
	// Types keeps only events of these types (before paging); nil keeps all.
	Types []registry.EventType
	// Quiet, if later than From, is where the caller knows news for the
	// query starts: it read the events after From and before Quiet, and
	// none matched Types. The store reads the event at From, then goes on
	// at Quiet, never reading what lies between, so that a long-poll that
	// waited past events it does not ask for is answered without reading
	// them again. Events are only appended after the head, so when the
	// caller is right the page is the one From alone gives.
	Quiet timeuuid.UUID
}

// Skips reports whether q reads on at Quiet after the event at From.
func (q EventQuery) Skips() bool { return timeuuid.Compare(q.Quiet, q.From) > 0 }

// Full reports whether a page of q holding n events of size bytes
// between them is full before an event of next bytes.
func (q EventQuery) Full(n, size, next int) bool {
	return n == q.Limit || q.MaxBytes > 0 && n > 0 && size+next > q.MaxBytes
}

// Event is a stored event: its id, its type and its wire JSON.
type Event struct {
	ID   timeuuid.UUID
	Type registry.EventType
	JSON json.RawMessage
}

// EventPage is one page of events.
type EventPage struct {
	Values []Event
	// Next is the id of the first matching event not included, zero if none.
	Next timeuuid.UUID
	// Head is the id of the newest event in the feed when it was read
	// (zero if none): events appended later have higher ids.
	Head timeuuid.UUID
}

// Errors the stores return; the server maps them to faults.
var (
	// ErrServiceExists: a service with this id already exists.
	ErrServiceExists = errors.New("service already exists")
	// ErrMarkerExpired: retention deleted events the marker asks for.
	ErrMarkerExpired = errors.New("marker expired")
	// ErrTokenUnknown: no such identity token.
	ErrTokenUnknown = errors.New("unknown token")
	// ErrUnavailable: the store cannot be reached; the request may be retried.
	ErrUnavailable = errors.New("store unavailable")
	// ErrDevTenantsTaken: DevTenant found every --dev tenant id
	// (DevTenantFirst and the DevTenants after it) taken by other users.
	ErrDevTenantsTaken = errors.New("every --dev tenant id (100000..999999) is taken: use --users, or a new data directory")
)

// The --dev tenant ids of users other than "dev": DevTenants of them from
// DevTenantFirst, each user's derived from its name, probing past those
// taken.
const DevTenantFirst, DevTenants = 100000, 900000

// RateLimitError refuses a call past a rate the store keeps: the etcd
// store's budget of heartbeats that move a service from another node
// (heartbeats are outside the server's write limit, and a move writes).
type RateLimitError struct {
	// Wait is how long until a call would be allowed again.
	Wait time.Duration
	// Limit says which limit, for the fault's details.
	Limit string
}

func (e *RateLimitError) Error() string { return e.Limit }

// Object kinds named in NotFoundError, as the API names them.
const (
	KindService         = "Service"
	KindConfigValue     = "ConfigurationValue"
	KindHeartbeatMarker = "HeartbeatMarker"
)

// NotFoundError says which object was missing (spec §4.3).
type NotFoundError struct {
	Kind string
	Key  string
}

func (e *NotFoundError) Error() string {
	return `Object "` + e.Kind + `" with key "` + e.Key + `" does not exist`
}

// Resource names used in LimitError, as the API names them.
const (
	ResourceService     = "service"
	ResourceConfigValue = "configuration_value"
)

// LimitError says an account holds as many objects of a kind as it may.
type LimitError struct {
	Resource string
	Max      int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("Limit for resource %s has been reached. Maximum allowed objects: %d", e.Resource, e.Max)
}
