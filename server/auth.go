package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/svcreg/svcreg/internal/retry"
	"github.com/svcreg/svcreg/server/store"
)

// User is one entry of the users file.
type User struct {
	Name string `toml:"name"`
	// Tenant is the user's numeric tenant id (the official Java client reads
	// it as a 32-bit integer).
	Tenant string `toml:"tenant"`
	// APIKey authenticates RAX-KSKEY:apiKeyCredentials requests.
	APIKey string `toml:"api_key"`
	// PasswordHash is a bcrypt hash that authenticates passwordCredentials
	// requests.
	PasswordHash string `toml:"password_hash"`
	// Tokens are static API tokens that never expire.
	Tokens []string `toml:"tokens"`
}

// String formats u for %v and %+v without its APIKey, PasswordHash and
// Tokens, so that a User that reaches a log or an error message does not
// carry its credentials.
func (u User) String() string { return fmt.Sprintf("%+v", u.redacted()) }

// GoString formats u for %#v without its credentials, as String does.
func (u User) GoString() string {
	return "server.User" + strings.TrimPrefix(fmt.Sprintf("%#v", u.redacted()), "server.plainUser")
}

// LogValue is u as log/slog shows it: its name and tenant, and which
// credentials it has, not what they are.
func (u User) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", u.Name), slog.String("tenant", u.Tenant),
		slog.Bool("api_key", u.APIKey != ""), slog.Bool("password", u.PasswordHash != ""), slog.Int("tokens", len(u.Tokens)))
}

// plainUser is a User without its methods, for formatting.
type plainUser User

// redacted is u with each credential it has replaced by a mark.
func (u User) redacted() plainUser {
	const mark = "[redacted]"
	for _, f := range []*string{&u.APIKey, &u.PasswordHash} {
		if *f != "" {
			*f = mark
		}
	}
	if u.Tokens != nil {
		tokens := make([]string, len(u.Tokens))
		for i := range tokens {
			tokens[i] = mark
		}
		u.Tokens = tokens
	}
	return plainUser(u)
}

type usersFile struct {
	Users []fileUser `toml:"user"`
}

// fileUser is a User as the users file holds it: its tenant a string or
// an integer (fileTenant).
type fileUser struct {
	User
	Tenant fileTenant `toml:"tenant"`
}

// fileTenant is a users file's tenant: "123456", or 123456 unquoted (the
// tenant is numeric), taken as its decimal string. Any other TOML value
// is refused.
type fileTenant string

func (t *fileTenant) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*t = fileTenant(v)
	case int64:
		*t = fileTenant(strconv.FormatInt(v, 10))
	default:
		kind := "not a number"
		if _, ok := v.(float64); ok {
			kind = "a number with a fraction or exponent"
		}
		return fmt.Errorf("tenant %v is not a whole number (%s): give one, as 123456 or \"123456\"", v, kind)
	}
	return nil
}

// LoadUsers reads a users file:
//
//	[[user]]
//	name = "deploy"
//	tenant = "123456"               # or 123456
//	api_key = "…"                   # and/or
//	password_hash = "$2a$10$…"       # bcrypt; and/or
//	tokens = ["…"]                   # static tokens, 20 characters or more
func LoadUsers(path string) ([]User, error) {
	var f usersFile
	md, err := toml.DecodeFile(path, &f)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if undec := md.Undecoded(); len(undec) > 0 {
		return nil, fmt.Errorf("users file %s: unknown key %q (a user has name, tenant, api_key, password_hash, tokens)", path, undec[0].String())
	}
	if len(f.Users) == 0 {
		// A file being rewritten in place (an editor, cat >) is empty for a
		// moment: taken, it would revoke every user's tokens.
		return nil, fmt.Errorf("users file %s holds no [[user]]: give it at least one (and replace it whole: write the new file beside it, then mv it over)", path)
	}
	users := make([]User, len(f.Users))
	for i, u := range f.Users {
		users[i] = u.User
		users[i].Tenant = string(u.Tenant)
	}
	seen := map[string]bool{}
	for i, u := range users {
		where := fmt.Sprintf("users file %s: user %d", path, i+1)
		switch {
		case u.Name == "":
			return nil, fmt.Errorf("%s: name is missing", where)
		case len(u.Name) > maxUsernameLen || strings.ContainsFunc(u.Name, unicode.IsControl):
			return nil, fmt.Errorf("%s: name %.40q… is not 1 to %d bytes without control characters, as a login's must be", where, u.Name, maxUsernameLen)
		case seen[u.Name]:
			return nil, fmt.Errorf("%s: name %q is used twice", where, u.Name)
		case !validTenant(u.Tenant):
			return nil, fmt.Errorf("%s (%s): tenant %q must be a number from 1 to 2147483647", where, u.Name, u.Tenant)
		case u.APIKey == "" && u.PasswordHash == "" && len(u.Tokens) == 0:
			return nil, fmt.Errorf("%s (%s): give it an api_key, a password_hash or tokens", where, u.Name)
		}
		for i, t := range u.Tokens {
			if len(t) < minSecretLen {
				return nil, fmt.Errorf("%s (%s): static token %d is %d characters; give each at least %d random ones (openssl rand -hex 16): a static token is checked on every API request, where no limit bounds guessing it", where, u.Name, i+1, len(t), minSecretLen)
			}
		}
		if u.PasswordHash != "" {
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				// Too short or without the $ prefix, it is no hash at all
				// (a password, say): bcrypt's words would only confuse,
				// and could show a part of it.
				why := ""
				var prefix bcrypt.InvalidHashPrefixError
				if !errors.Is(err, bcrypt.ErrHashTooShort) && !errors.As(err, &prefix) {
					why = " (" + err.Error() + ")"
				}
				return nil, fmt.Errorf("%s (%s): password_hash is not a bcrypt hash%s; make one with svcreg server --hash-password < pw.txt (the password on stdin)", where, u.Name, why)
			}
		}
		seen[u.Name] = true
	}
	return users, nil
}

func validTenant(t string) bool {
	n, err := strconv.ParseInt(t, 10, 32)
	return err == nil && n > 0 && strconv.FormatInt(n, 10) == t
}

// HashPassword returns the bcrypt hash for a users file's password_hash.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}

// AuthConfig configures Auth.
type AuthConfig struct {
	// Store keeps issued tokens and revocations (every store.Store of
	// this module is one); required.
	Store store.Identity
	// Users are the users of a users file. They exclude Dev: NewAuth
	// panics if both are given, so that a --dev tenant never collides with
	// a real user's.
	Users []User
	// Dev lets any username authenticate with the API key (or password)
	// "dev"; each user gets a numeric tenant of its own, "dev" gets 7777.
	Dev bool
	// TokenTTL is how long an issued token lives; 24h if zero, at most
	// MaxTokenTTL.
	TokenTTL time.Duration
	// Limits bound failed requests, token issues and password checks.
	Limits AuthLimits
	// SweepInterval is how often Run drops what has expired, tries again
	// to record the revocations the store did not take, and reads those
	// other nodes recorded; a minute if zero.
	SweepInterval time.Duration
	// Clock returns the current time; time.Now if nil.
	Clock func() time.Time
	// Logger receives the identity endpoint's warnings (weak secrets in
	// the users file, store failures); nothing is logged if nil.
	Logger *slog.Logger
	// Registerer receives the identity endpoint's metrics; none if nil.
	Registerer prometheus.Registerer
}

// MaxTokenTTL is the longest TokenTTL. A revocation is kept that long, so
// that it covers the tokens of any earlier run, whatever their lifetime;
// and a token expiring further ahead (issued by an earlier release under a
// longer lifetime) is refused.
const MaxTokenTTL = store.MaxTokenTTL

// DevAPIKey is the API key (and password) every user has in --dev mode.
const DevAPIKey = "dev"

// maxUsernameLen bounds a username (Keystone's own bound), so that no
// attacker-chosen name fills a log line or a store key.
const maxUsernameLen = 255

// Auth serves the Keystone-v2-compatible identity endpoint and checks the
// tokens it issues.
type Auth struct {
	cfg   AuthConfig
	users atomic.Pointer[userSet]
	setMu sync.Mutex // serialises the changes of users (setUsers, mergeRevocations); guards unrecorded and clamps
	// unrecorded are the revocations of SetUsers not yet recorded in the
	// store (recordRevocations).
	unrecorded map[string]store.Revocation
	recordMu   sync.Mutex // one recordRevocations at a time
	// mark is the latest time this node gave a token or a revocation
	// (stamp), or read in a revocation (raiseMark): its clock stepping
	// back does not put a token issued after a revocation before it, nor
	// a revocation made after a token before that.
	markMu sync.Mutex
	mark   time.Time
	// clamps are the revocation times read from the store that were too
	// far ahead, with the time each was first read here (clamped);
	// guarded by setMu.
	clamps  map[string]time.Time
	cache   sync.Map // [32]byte -> cachedToken: valid tokens, and those revoked here
	metrics authMetrics

	addrFailures *keyedLimiter // by client address
	userFailures *keyedLimiter // by username
	issues       *keyedLimiter // by username
	// reissueChecks bounds, by username, the password checks of logins
	// past the issue limit (see issue), as userFailures does failed ones.
	reissueChecks *keyedLimiter
	bcrypt        *bcryptGate
	last          lastIssued // the token this node issued to each user last
	// failLog bounds the lines of logins the store fails (a full disk,
	// etcd out of reach), as the API's failed requests are bounded.
	failLog *logLimit
}

// lastIssued holds, for each user and kind of credential (API key or
// password), the last token this node issued to it: a login past the
// user's issue limit, with the credential that token was issued for, gets
// it back while it is valid, instead of a 429 (see issue). By kind, so
// that a password login (the dashboard's) does not take the token that
// the clients logging in with the API key get back. The official Python client logs in before every call while its
// token is valid (spec §11.1), and its heartbeater ends at the first
// error: at one call a few seconds, it would have run past the limit
// within the hour, and its services timed out. (The original's identity
// service answered every login with the token still valid.)
type lastIssued struct {
	mu sync.Mutex
	m  map[issuedFor]issuedToken
}

// issuedFor is a user and the kind of credential a token was issued for.
type issuedFor struct {
	user     string
	password bool
}

type issuedToken struct {
	token string
	ti    store.TokenInfo
}

// maxLastIssued bounds lastIssued, as maxLimiterKeys bounds the limits:
// --dev users are any name.
const maxLastIssued = maxLimiterKeys

func (l *lastIssued) get(user string, password bool) (issuedToken, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.m[issuedFor{user, password}]
	return t, ok
}

// put records t as user's last token for a password (or an API key).
// Full, it forgets the expired ones (at now), then one at random.
func (l *lastIssued) put(user string, password bool, t issuedToken, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[issuedFor]issuedToken{}
	}
	key := issuedFor{user, password}
	if _, ok := l.m[key]; !ok && len(l.m) >= maxLastIssued {
		maps.DeleteFunc(l.m, func(_ issuedFor, t issuedToken) bool { return !now.Before(t.ti.Expires) })
		for u := range l.m {
			if len(l.m) < maxLastIssued {
				break
			}
			delete(l.m, u)
		}
	}
	l.m[key] = t
}

// userSet is one version of the users file, swapped whole by SetUsers.
type userSet struct {
	byName map[string]User
	static map[[32]byte]store.TokenInfo
	// dummyHash is compared against when a password request names no user
	// with a password hash, so that an unknown user costs the same bcrypt
	// work as a known one and the answer's time does not tell them apart.
	dummyHash []byte
	// revoked is, for each user removed or whose tenant, API key or
	// password hash changed, the tokens that change revoked (setUsers).
	// Kept until they have expired, and recorded in the store so that a
	// restart keeps it.
	revoked map[string]store.Revocation
	// prints are the users' credentials' prints, by name.
	prints map[string]credPrints
}

// credPrints are the prints of a user's credentials (see
// store.TokenInfo.KeyPrint).
type credPrints struct{ key, password string }

// credPrint is the print of one credential of user: 4 bytes of a SHA-256
// of the user's name and the credential; "" for none. A credential
// replaced keeps its print once in 2^32; and 4 bytes tell nothing useful
// about a key of the 20 characters or more the users file asks for.
func credPrint(user, cred string) string {
	if cred == "" {
		return ""
	}
	h := sha256.Sum256([]byte("svcreg credential print\x00" + user + "\x00" + cred))
	return hex.EncodeToString(h[:4])
}

func newUserSet(users []User) *userSet {
	s := &userSet{byName: map[string]User{}, static: map[[32]byte]store.TokenInfo{}, prints: map[string]credPrints{}}
	cost := 0
	for _, u := range users {
		s.byName[u.Name] = u
		s.prints[u.Name] = credPrints{credPrint(u.Name, u.APIKey), credPrint(u.Name, u.PasswordHash)}
		for _, t := range u.Tokens {
			s.static[sha256.Sum256([]byte(t))] = store.TokenInfo{User: u.Name, Tenant: u.Tenant}
		}
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
			cost = max(cost, c)
		}
	}
	if cost > 0 {
		var pw [16]byte
		rand.Read(pw[:])
		s.dummyHash, _ = bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(pw[:])), cost)
	}
	return s
}

// tokenRecheck is how long a valid token is taken from the cache before
// the store is asked again: with several server nodes, a token revoked at
// one stops working at the others within it.
const tokenRecheck = 30 * time.Second

type cachedToken struct {
	store.TokenInfo
	until time.Time // the earlier of Expires and the next recheck
	// revoked marks a token revoked here (DELETE) until it expires: a
	// request that read it from the store before the delete does not put
	// it back in the cache.
	revoked bool
}

// NewAuth returns an Auth. It panics if cfg has both Users and Dev.
func NewAuth(cfg AuthConfig) *Auth {
	if cfg.Dev && len(cfg.Users) > 0 {
		panic("server.NewAuth: Dev accepts anyone and excludes Users")
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	if cfg.TokenTTL < 0 || cfg.TokenTTL > MaxTokenTTL {
		panic("server.NewAuth: TokenTTL is past MaxTokenTTL, or negative")
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Limits = cfg.Limits.withDefaults()
	a := &Auth{
		cfg:           cfg,
		addrFailures:  newKeyedLimiter(cfg.Limits.FailuresPerAddress, time.Minute, cfg.Clock),
		userFailures:  newKeyedLimiter(cfg.Limits.FailuresPerUser, time.Minute, cfg.Clock),
		issues:        newKeyedLimiter(cfg.Limits.IssuesPerUser, time.Hour, cfg.Clock),
		reissueChecks: newKeyedLimiter(cfg.Limits.FailuresPerUser, time.Minute, cfg.Clock),
		bcrypt:        newBcryptGate(cfg.Limits),
		failLog:       newLogLimit(failLogRate, failLogBurst, cfg.Clock),
	}
	a.users.Store(newUserSet(cfg.Users))
	a.unrecorded = map[string]store.Revocation{}
	a.metrics = newAuthMetrics(cfg.Registerer, func() int {
		a.setMu.Lock()
		defer a.setMu.Unlock()
		return len(a.unrecorded)
	})
	a.warnShortSecrets(cfg.Users)
	return a
}

// minSecretLen is the shortest API key not warned about, and the shortest
// static token a users file may give. Guessing an API key is bounded by
// the per-address limit of logins only, which holds
// against a key of 128 random bits (32 hex digits, 22 base64 characters),
// not against a short one guessed from many addresses.
const minSecretLen = 20

// warnShortSecrets logs the users whose API key or static tokens are
// shorter than minSecretLen, without the secrets.
func (a *Auth) warnShortSecrets(users []User) {
	for _, u := range users {
		short := u.APIKey != "" && len(u.APIKey) < minSecretLen
		for _, t := range u.Tokens {
			short = short || len(t) < minSecretLen
		}
		if short {
			a.cfg.Logger.Warn("users file: a short api_key or static token can be guessed; give each at least 128 random bits (openssl rand -hex 16)",
				"user", logValue(u.Name), "min_length", minSecretLen)
		}
	}
}

// SetUsers replaces the users (a users file read again): tokens of users
// no longer there, or whose tenant changed, stop working for good (a user
// added back, or moved back, does not get them back), and so do the
// tokens issued with an API key or password hash that was replaced or
// removed. Those revocations are then recorded in the store. It is an
// error in Dev mode.
func (a *Auth) SetUsers(users []User) error {
	if a.cfg.Dev {
		return errors.New("--dev accepts anyone and has no users file")
	}
	a.setUsers(users)
	// Bounded, so that a SIGHUP while the store does not answer takes at
	// most this long; and not at all while Run is recording: what is left
	// waits for Run's next try.
	if a.recordMu.TryLock() {
		a.recordLocked(setUsersRecordTimeout, false)
		a.recordMu.Unlock()
	}
	return nil
}

// setUsersRecordTimeout bounds SetUsers' try to record its revocations,
// and stopRecordTimeout Run's last try as it stops.
const (
	setUsersRecordTimeout = 2 * time.Second
	stopRecordTimeout     = 5 * time.Second
)

// stamp returns the time to give a token or a revocation: the clock, or
// just after the latest time given or loaded, if the clock is behind it.
// A revocation's stamp is followed by a nanosecond no token gets, so every
// token issued after it is after it.
func (a *Auth) stamp(revocation bool) time.Time {
	a.markMu.Lock()
	defer a.markMu.Unlock()
	t := a.cfg.Clock().Round(0)
	if !t.After(a.mark) {
		t = a.mark
	}
	a.mark = t
	if revocation {
		a.mark = t.Add(time.Nanosecond)
	}
	return t
}

// raiseMark makes every later stamp come after t.
func (a *Auth) raiseMark(t time.Time) {
	a.markMu.Lock()
	defer a.markMu.Unlock()
	if t = t.Add(time.Nanosecond); t.After(a.mark) {
		a.mark = t
	}
}

// clockAllowance is how far ahead of this node's clock another node's may
// be for its tokens of the longest lifetime to be taken, and for the times
// of its revocations to be taken as they are (clamped).
const clockAllowance = 5 * time.Minute

// forever is the time of a revocation that is not made yet: it revokes
// every token it applies to, whenever issued.
var forever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// setUsers switches to users and works out what the changes revoke
// (store.Revocation): a user removed or moved to another tenant, every
// token of the tenant it left; a credential replaced or removed, the
// tokens carrying its print (which current refuses meanwhile anyway: the
// print is no longer the user's) and the tokens that record no print.
func (a *Auth) setUsers(users []User) {
	a.setMu.Lock()
	defer a.setMu.Unlock()
	a.warnShortSecrets(users)
	old, next := a.users.Load(), newUserSet(users)
	changes := map[string]store.Revocation{} // the times are forever here
	for name, was := range old.byName {
		u, ok := next.byName[name]
		var c store.Revocation
		if !ok || u.Tenant != was.Tenant {
			c.Tenants = map[string]time.Time{was.Tenant: forever}
		}
		if ok {
			p := old.prints[name]
			for _, cred := range []struct{ was, is, print string }{{was.APIKey, u.APIKey, p.key}, {was.PasswordHash, u.PasswordHash, p.password}} {
				if cred.was != "" && cred.was != cred.is {
					if c.Retired == nil {
						c.Retired = map[string]time.Time{}
					}
					c.Retired[cred.print] = forever
					c.Printless = forever
				}
			}
		}
		if !c.IsZero() {
			changes[name] = c
		}
	}
	kept := map[string]store.Revocation{}
	for name, r := range old.revoked {
		if r = r.Pruned(a.cfg.Clock()); !r.IsZero() {
			kept[name] = r
		}
	}
	// A token is stamped before its credentials are checked (issue), so
	// the revocation time is read once the old credentials can no longer
	// be checked: until then, the tokens it applies to are all refused.
	next.revoked = maps.Clone(kept)
	for name, c := range changes {
		next.revoked[name] = c.Merge(kept[name])
	}
	a.users.Store(next)
	if len(changes) > 0 {
		final := *next
		final.revoked = kept
		now := a.stamp(true)
		for name, c := range changes {
			r := stamped(c, now).Merge(kept[name])
			final.revoked[name] = r
			a.unrecorded[name] = r.Merge(a.unrecorded[name])
		}
		a.users.Store(&final)
	}
}

// stamped is c with each time (forever) replaced by now.
func stamped(c store.Revocation, now time.Time) store.Revocation {
	for _, m := range []map[string]time.Time{c.Tenants, c.Retired} {
		for k := range m {
			m[k] = now
		}
	}
	if !c.Printless.IsZero() {
		c.Printless = now
	}
	return c
}

// storeTimeout bounds each try of recordRevocations and refreshRevocations.
const storeTimeout = 10 * time.Second

// recordRevocations records the revocations not yet in the store, so that
// a restart keeps them. Those it cannot record hold in memory meanwhile,
// and are tried again by the next SetUsers and by Run. It writes without
// holding setMu, so that a SIGHUP meanwhile takes effect at once.
func (a *Auth) recordRevocations() {
	a.recordMu.Lock()
	defer a.recordMu.Unlock()
	a.recordLocked(storeTimeout, false)
}

// recordLocked is recordRevocations within timeout; the caller holds
// recordMu. last says it is the last try, as the server stops: its
// failures are not logged one by one, and it returns the last.
func (a *Auth) recordLocked(timeout time.Duration, last bool) (failed error) {
	a.setMu.Lock()
	pending := maps.Clone(a.unrecorded)
	a.setMu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	now := a.cfg.Clock()
	for name, r := range pending {
		if now.Before(r.Until()) {
			if err := a.cfg.Store.RevokeUser(ctx, name, r); err != nil {
				failed = err
				if !last {
					a.cfg.Logger.Error("cannot record a user's token revocation in the store; it holds in memory until a restart, and is tried again",
						"user", logValue(name), "err", err, "retry_in", a.cfg.SweepInterval)
				}
				continue
			}
		}
		// Recorded (or past its end), unless SetUsers revoked more
		// meanwhile.
		a.setMu.Lock()
		if cur := a.unrecorded[name]; cur.Equal(r) {
			delete(a.unrecorded, name)
		}
		a.setMu.Unlock()
	}
	return failed
}

// clamped is r with each time more than clockAllowance ahead of now (made
// by a node whose clock was ahead) taken as the time it was first read
// here: such a time would refuse the tokens issued here until then. The
// caller holds setMu; clamps is what mergeRevocations read before, and
// seen what it reads now.
func (a *Auth) clamped(user string, r store.Revocation, now time.Time, seen map[string]time.Time) store.Revocation {
	limit := now.Add(clockAllowance)
	clamp := func(part string, at time.Time) time.Time {
		// Once clamped, for as long as the store holds that time, also
		// once this clock has caught up with it.
		key := user + "\x00" + part + "\x00" + at.Format(time.RFC3339Nano)
		first, ok := a.clamps[key]
		if !ok {
			if !at.After(limit) {
				return at
			}
			first = now
			a.cfg.Logger.Warn("a user's token revocation was made by a clock ahead of this one; taken as made now",
				"user", logValue(user), "made_at", at, "now", now)
		}
		seen[key] = first
		return first
	}
	out := store.Revocation{Printless: clamp("printless", r.Printless)}
	for _, m := range []struct {
		part     string
		from, to *map[string]time.Time
	}{{"tenant:", &r.Tenants, &out.Tenants}, {"retired:", &r.Retired, &out.Retired}} {
		for k, at := range *m.from {
			if *m.to == nil {
				*m.to = map[string]time.Time{}
			}
			(*m.to)[k] = clamp(m.part+k, at)
		}
	}
	return out
}

// loadTimeout bounds LoadRevocations' tries.
const loadTimeout = time.Minute

// LoadRevocations reads the revocations recorded in the store (by SetUsers
// before a restart, or by another node) and refuses the tokens they
// cover. It tries for up to a minute; the server does not start without
// them. Call it once, before serving. It does nothing in Dev mode.
func (a *Auth) LoadRevocations(ctx context.Context) error {
	if a.cfg.Dev {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	backoff := retry.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	for {
		recorded, err := a.cfg.Store.Revocations(ctx)
		if err == nil {
			a.mergeRevocations(recorded)
			return nil
		}
		wait := backoff.Next()
		a.cfg.Logger.Warn("cannot read the users' token revocations from the store; trying again", "err", err, "retry_in", wait)
		if retry.Sleep(ctx, wait) != nil {
			return fmt.Errorf("read the users' token revocations from the store (tried for %v): %w", loadTimeout, err)
		}
	}
}

// mergeRevocations adds the revocations read from the store to this
// node's (the later time of each part).
func (a *Auth) mergeRevocations(recorded map[string]store.Revocation) {
	a.setMu.Lock()
	defer a.setMu.Unlock()
	set := a.users.Load()
	now := a.cfg.Clock()
	var next map[string]store.Revocation
	seen := map[string]time.Time{}
	defer func() { a.clamps = seen }() // only those still recorded
	for name, r := range recorded {
		r = a.clamped(name, r, now, seen)
		a.raiseMark(r.Until().Add(-MaxTokenTTL))
		merged := r.Merge(set.revoked[name])
		if merged.Equal(set.revoked[name]) {
			continue
		}
		if next == nil {
			next = maps.Clone(set.revoked)
			if next == nil {
				next = map[string]store.Revocation{}
			}
		}
		next[name] = merged
	}
	if next != nil {
		changed := *set
		changed.revoked = next
		a.users.Store(&changed)
	}
}

// refreshRevocations reads the revocations recorded in the store, other
// nodes' among them, and adds them to this node's.
func (a *Auth) refreshRevocations() {
	if a.cfg.Dev {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	recorded, err := a.cfg.Store.Revocations(ctx)
	if err != nil {
		a.cfg.Logger.Warn("cannot read the users' token revocations from the store; trying again", "err", err, "retry_in", a.cfg.SweepInterval)
		return
	}
	a.mergeRevocations(recorded)
}

// current reports whether a token's user still exists with the token's
// tenant, the credential it was issued with is still the user's, and no
// change of the user revoked it (setUsers).
func (a *Auth) current(ti store.TokenInfo) bool {
	if a.cfg.Dev {
		return true
	}
	set := a.users.Load()
	u, ok := set.byName[ti.User]
	if !ok || u.Tenant != ti.Tenant {
		return false
	}
	// The credential the token was issued with, replaced or removed since
	// (a change of the user's other credential, or adding one, revokes
	// nothing: that credential still gets tokens).
	p := set.prints[ti.User]
	if ti.KeyPrint != "" && ti.KeyPrint != p.key || ti.PasswordPrint != "" && ti.PasswordPrint != p.password {
		return false
	}
	// Issued under a longer lifetime than any revocation is kept for (an
	// earlier release's --token-ttl), or by a node whose clock is ahead:
	// no revocation would cover it.
	if !ti.Issued.IsZero() && ti.Expires.Sub(ti.Issued) > MaxTokenTTL ||
		ti.Expires.After(a.cfg.Clock().Add(MaxTokenTTL+clockAllowance)) {
		return false
	}
	r, revoked := set.revoked[ti.User]
	return !revoked || !r.Covers(ti)
}

// Valid reports whether token is a live token of tenant. A token that is
// not static and not of the issued form is not looked up in the store.
func (a *Auth) Valid(ctx context.Context, token, tenant string) (bool, error) {
	h := sha256.Sum256([]byte(token))
	if valid, sure := a.validNow(h, token, tenant); sure {
		return valid, nil
	}
	now := a.cfg.Clock()
	if v, ok := a.cache.Load(h); ok && !now.Before(v.(cachedToken).until) {
		a.cache.CompareAndDelete(h, v)
	}
	ti, err := a.cfg.Store.Token(ctx, h)
	if errors.Is(err, store.ErrTokenUnknown) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !now.Before(ti.Expires) {
		return false, nil
	}
	if v, loaded := a.cache.LoadOrStore(h, cachedToken{TokenInfo: ti, until: minTime(ti.Expires, now.Add(tokenRecheck))}); loaded && v.(cachedToken).revoked {
		return false, nil
	}
	return ti.Tenant == tenant && a.current(ti), nil
}

// validNow is Valid without a store read, for token whose SHA-256 is h:
// sure is false when only the store can tell (a token not cached, or
// cached longer than tokenRecheck ago).
func (a *Auth) validNow(h [32]byte, token, tenant string) (valid, sure bool) {
	if ti, ok := a.users.Load().static[h]; ok {
		return ti.Tenant == tenant, true
	}
	if !issuedForm(token) {
		return false, true
	}
	if v, ok := a.cache.Load(h); ok {
		if ct := v.(cachedToken); a.cfg.Clock().Before(ct.until) {
			return !ct.revoked && ct.Tenant == tenant && a.current(ct.TokenInfo), true
		}
	}
	return false, false
}

// issuedForm reports whether token has the form of the tokens Auth
// issues: 64 lower-case hex digits.
func issuedForm(token string) bool {
	if len(token) != 64 {
		return false
	}
	for i := range len(token) {
		if c := token[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Run drops expired tokens from the cache, and the limits' buckets that
// are full again, tries again to record the revocations the store did not
// take, and reads those other nodes recorded, every SweepInterval until
// ctx is done. Then it tries once more, for up to stopRecordTimeout, to
// record what the store has not taken (a restart would forget it), once
// a sweep under way, which may wait on the store too, is done.
func (a *Auth) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.recordLast()
			return nil
		case <-t.C:
		}
		if ctx.Err() != nil {
			continue // stopping: no sweep first
		}
		a.addrFailures.pruneAll()
		a.userFailures.pruneAll()
		a.issues.pruneAll()
		a.reissueChecks.pruneAll()
		a.recordRevocations()
		a.refreshRevocations()
		now := a.cfg.Clock()
		a.cache.Range(func(k, v any) bool {
			if !now.Before(v.(cachedToken).until) {
				a.cache.CompareAndDelete(k, v) // not a tombstone stored since
			}
			return true
		})
	}
}

// recordLast tries once more, for up to stopRecordTimeout, to record the
// revocations the store has not taken, and logs those it still has not.
func (a *Auth) recordLast() {
	a.recordMu.Lock()
	err := a.recordLocked(stopRecordTimeout, true)
	a.recordMu.Unlock()
	a.setMu.Lock()
	left := slices.Sorted(maps.Keys(a.unrecorded))
	a.setMu.Unlock()
	if len(left) > 0 {
		a.cfg.Logger.Error("stopping with users' token revocations the store has not taken: after a restart, their tokens from before the users file changed work again, if their credentials are back",
			"count", len(left), "users", logValue(strings.Join(left, ",")), "err", err)
	}
}

// Keystone v2 request and response shapes (spec §3.1).
type authRequest struct {
	Auth struct {
		APIKey *struct {
			Username string `json:"username"`
			APIKey   string `json:"apiKey"`
		} `json:"RAX-KSKEY:apiKeyCredentials"`
		Password *struct {
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"passwordCredentials"`
		Token *struct {
			ID string `json:"id"`
		} `json:"token"`
		TenantName string `json:"tenantName"`
		TenantID   string `json:"tenantId"`
	} `json:"auth"`
}

type accessBody struct {
	Access access `json:"access"`
}

type access struct {
	Token          accessToken    `json:"token"`
	ServiceCatalog []catalogEntry `json:"serviceCatalog"`
	User           accessUser     `json:"user"`
}

type accessToken struct {
	ID      string            `json:"id"`
	Expires string            `json:"expires"`
	Tenant  map[string]string `json:"tenant"`
}

type catalogEntry struct {
	Name      string     `json:"name"`
	Type      string     `json:"type"`
	Endpoints []endpoint `json:"endpoints"`
}

type endpoint struct {
	Region    string `json:"region,omitempty"`
	TenantID  string `json:"tenantId"`
	PublicURL string `json:"publicURL"`
}

type accessUser struct {
	ID    string              `json:"id"`
	Name  string              `json:"name"`
	Roles []map[string]string `json:"roles"`
}

// keystoneFault writes a Keystone-style error body.
func keystoneFault(w http.ResponseWriter, status int, kind, msg string) {
	writeJSON(w, status, map[string]any{kind: map[string]any{"code": status, "message": msg}})
}

// ServeTokens serves /v2.0/tokens: POST issues a token (or validates one, as
// the original's proxy asked), DELETE /v2.0/tokens/{token} revokes one.
func (a *Auth) ServeTokens(w http.ResponseWriter, r *http.Request, rest string) {
	rest = strings.TrimPrefix(rest, "/")
	if crossOrigin(r) {
		// A page of another origin can make a browser send this (a form,
		// or a fetch without CORS, needs no token): passwords tried from
		// the browsers of people who can reach the server would count
		// against its users' login limits, and lock them out. No API
		// client sends another origin; the dashboard sends its own.
		keystoneFault(w, http.StatusForbidden, "forbidden", "A token request sent by a web page of another origin is refused.")
		return
	}
	switch {
	case r.Method == http.MethodPost && rest == "":
		a.serveIssue(w, r)
	case r.Method == http.MethodDelete && rest != "":
		a.serveRevoke(w, r, rest)
	default:
		keystoneFault(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.")
	}
}

// crossOrigin reports whether a browser sent r for a page of another
// origin: by its Sec-Fetch-Site header, which the browser sets from the
// page's origin and the URL it asked for (so it holds behind a proxy that
// rewrites Host), but sends only over HTTPS and to loopback; else by its
// Origin header, whose host name must be that of the Host the request
// was sent to, or of the first X-Forwarded-Host or Forwarded host a proxy
// passed on, and its port too where that names one (a proxy may drop
// it). Clients other than browsers send neither header.
func crossOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site != "same-origin" && site != "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Hostname() == "" { // "null": a sandboxed page, a file
		return true
	}
	forwarded, _, _ := strings.Cut(r.Header.Get("Forwarded"), ",")
	var fwdHost string
	for _, kv := range strings.Split(forwarded, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && strings.EqualFold(k, "host") {
			fwdHost = strings.Trim(v, `"`)
		}
	}
	xfh, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ",")
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	for _, h := range []string{r.Host, strings.TrimSpace(xfh), fwdHost} {
		c := &url.URL{Host: h}
		if h != "" && strings.EqualFold(c.Hostname(), u.Hostname()) && (c.Port() == "" || c.Port() == port) {
			return false
		}
	}
	return true
}

// authFault is a Keystone-style error answer of the identity endpoint.
type authFault struct {
	status     int
	kind, msg  string
	retryAfter time.Duration // sent as Retry-After when set
}

func (f *authFault) write(w http.ResponseWriter) {
	if f == faultClientGone {
		w.WriteHeader(statusClientGone)
		return
	}
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, f.retryAfter.Round(time.Second))/time.Second)))
	}
	keystoneFault(w, f.status, f.kind, f.msg)
}

var (
	faultIdentityUnavailable = &authFault{status: http.StatusServiceUnavailable, kind: "serviceUnavailable", msg: "The identity store is unavailable; try again."}
	faultInvalidCredentials  = &authFault{status: http.StatusUnauthorized, kind: "unauthorized", msg: "Username or api key is invalid."}
	faultInvalidPassword     = &authFault{status: http.StatusUnauthorized, kind: "unauthorized", msg: "Username or password is invalid."}
	// faultClientGone: the client went away before its credentials were
	// checked, or its token stored (its request's context ended the
	// wait or the store call). Nothing is answered or logged as a
	// failure: a client hanging up at once must not make the server log
	// an error, or count an outage, for every request it sends.
	faultClientGone = &authFault{status: statusClientGone}
)

func tooManyRequests(retryAfter time.Duration, msg string) *authFault {
	return &authFault{status: http.StatusTooManyRequests, kind: "overLimit", msg: msg, retryAfter: retryAfter}
}

func (a *Auth) serveIssue(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		keystoneFault(w, http.StatusBadRequest, "badRequest", "Could not read the request body.")
		return
	}
	var req authRequest
	if err := json.Unmarshal(data, &req); err != nil {
		keystoneFault(w, http.StatusBadRequest, "badRequest", "The request body is not valid JSON: "+err.Error())
		return
	}
	var user, secret string
	switch c := req.Auth; {
	case c.APIKey != nil:
		user, secret = c.APIKey.Username, c.APIKey.APIKey
	case c.Password != nil:
		user, secret = c.Password.Username, c.Password.Password
	case c.Token != nil:
		a.serveValidate(w, r, c.Token.ID, cmp.Or(c.TenantName, c.TenantID))
		return
	default:
		keystoneFault(w, http.StatusBadRequest, "badRequest", `Expected auth with "RAX-KSKEY:apiKeyCredentials" or "passwordCredentials".`)
		return
	}
	ans, f := a.issue(r, user, secret, req.Auth.Password != nil)
	if f != nil {
		a.metrics.tokenRequests.WithLabelValues(strconv.Itoa(f.status)).Inc()
		f.write(w)
		return
	}
	a.metrics.tokenRequests.WithLabelValues("200").Inc()
	writeJSON(w, http.StatusOK, ans) // no-store, as every JSON answer (RFC 6749 5.1 asks it of token answers)
}

// issue checks a user's credentials under the limits and issues a token.
//
// A request takes one failure from its address's budget (and, for a
// password, from its username's) before its credentials are checked, and
// gives it back unless they turn out wrong: so requests running at once
// count against the budget, and no burst of concurrent guesses gets more
// checks than the budget holds. Likewise it takes a token issue, given
// back unless a token is issued. API-key requests neither spend nor are
// refused by the username's budget: an API key is a long random string
// compared in constant time, so guessing it is hopeless, while counting
// its failures would let anyone lock the key's owner out.
func (a *Auth) issue(r *http.Request, user, secret string, password bool) (accessBody, *authFault) {
	if user == "" || len(user) > maxUsernameLen || strings.ContainsFunc(user, unicode.IsControl) {
		return accessBody{}, &authFault{status: http.StatusBadRequest, kind: "badRequest",
			msg: "A username is 1 to " + strconv.Itoa(maxUsernameLen) + " bytes without control characters."}
	}
	addr := clientAddress(r)
	if ok, retry := a.addrFailures.reserve(addr); !ok {
		return accessBody{}, tooManyRequests(retry, "Too many failed token requests from this address; retry later.")
	}
	var userFailures *keyedLimiter // nil: no limit
	if password {
		userFailures = a.userFailures
	}
	if ok, retry := userFailures.reserve(user); !ok {
		a.addrFailures.refund(addr)
		return accessBody{}, tooManyRequests(retry, "Too many failed password logins for this user; retry later, or log in with an API key.")
	}
	// Past the user's issue limit, a login may still get the last token
	// issued to it here for its kind of credential (lastIssued), once its
	// credentials check.
	reserved, retry := a.issues.reserve(user)
	var last issuedToken
	if !reserved {
		var ok bool
		if last, ok = a.last.get(user, password); !ok {
			a.addrFailures.refund(addr)
			userFailures.refund(user)
			return accessBody{}, tooManyIssues(retry)
		}
		// A password's check is a bcrypt one, which no issue pays for
		// here: bounded as failed ones are, so that one user's logins
		// past the limit cannot keep the bcrypt gate full.
		if password {
			if ok, _ := a.reissueChecks.reserve(user); !ok {
				a.addrFailures.refund(addr)
				userFailures.refund(user)
				return accessBody{}, tooManyIssues(retry)
			}
		}
	}
	issued := a.stamp(false) // before the check: see setUsers
	// The print is of the credential checked (in the users it was checked
	// against): credentials replaced during the check leave the token
	// refused, never one of the old taken for the new.
	tenant, cred, f := a.authenticate(r.Context(), user, secret, password)
	if f != nil && reserved {
		a.issues.refund(user)
	}
	if f != faultInvalidCredentials && f != faultInvalidPassword {
		a.addrFailures.refund(addr)
		userFailures.refund(user)
	}
	if f != nil {
		return accessBody{}, f
	}
	if !reserved {
		lastCred := last.ti.KeyPrint
		if password {
			lastCred = last.ti.PasswordPrint
		}
		// Valid: not revoked, expired, or issued for a credential or
		// tenant the users file has changed since. Read from the store,
		// not the cache of valid tokens: revoked at another node less
		// than tokenRecheck ago (a client signing out), it is not given
		// again, to be refused there.
		if lastCred == cred && last.ti.Tenant == tenant {
			if ti, err := a.lookup(r.Context(), last.token); err == nil && ti.Tenant == tenant {
				a.metrics.tokensReissued.Inc()
				return a.accessFor(r, last.token, last.ti), nil
			}
		}
		return accessBody{}, tooManyIssues(retry)
	}
	var raw [32]byte
	rand.Read(raw[:])
	token := hex.EncodeToString(raw[:])
	// Only the credential it was issued with: a node whose users file has
	// not yet gained another credential of the user still takes it.
	ti := store.TokenInfo{User: user, Tenant: tenant, Expires: issued.Add(a.cfg.TokenTTL), Issued: issued}
	if password {
		ti.PasswordPrint = cred
	} else {
		ti.KeyPrint = cred
	}
	if err := a.cfg.Store.PutToken(r.Context(), sha256.Sum256([]byte(token)), ti); err != nil {
		a.issues.refund(user) // no token issued
		if r.Context().Err() != nil {
			return accessBody{}, faultClientGone
		}
		if more, ok := a.failLog.allow(); ok {
			a.cfg.Logger.Error("store token", "user", logValue(user), "err", err, more)
		}
		return accessBody{}, faultIdentityUnavailable
	}
	a.last.put(user, password, issuedToken{token: token, ti: ti}, a.cfg.Clock())
	return a.accessFor(r, token, ti), nil
}

func tooManyIssues(retry time.Duration) *authFault {
	return tooManyRequests(retry, "Too many tokens issued to this user; reuse a token until it expires.")
}

// authenticate returns the user's tenant, or the fault to answer:
// faultInvalidCredentials (an API key) or faultInvalidPassword for wrong
// credentials, the only outcome that counts as a failure.
func (a *Auth) authenticate(ctx context.Context, user, secret string, password bool) (tenant, cred string, f *authFault) {
	tenant, cred, ok, err := a.checkCredentials(ctx, user, secret, password)
	switch {
	case errors.Is(err, errBusy):
		return "", "", &authFault{status: http.StatusServiceUnavailable, kind: "serviceUnavailable",
			msg: "Too many password checks are waiting; try again.", retryAfter: time.Second}
	case err != nil && ctx.Err() != nil:
		return "", "", faultClientGone
	case err != nil:
		if more, ok := a.failLog.allow(); ok {
			a.cfg.Logger.Error("authenticate", "user", logValue(user), "err", err, more)
		}
		return "", "", faultIdentityUnavailable
	case !ok && password:
		return "", "", faultInvalidPassword
	case !ok:
		return "", "", faultInvalidCredentials
	}
	return tenant, cred, nil
}

// checkCredentials returns the user's tenant, and the print of the
// credential checked, if secret is its API key (or, for a password,
// matches its hash). A password is always compared with a bcrypt hash, the
// dummy one if the user has none, through the bcrypt gate.
func (a *Auth) checkCredentials(ctx context.Context, user, secret string, password bool) (tenant, cred string, ok bool, err error) {
	set := a.users.Load()
	u, known := set.byName[user]
	if password && (u.PasswordHash != "" || set.dummyHash != nil) {
		hash, match := []byte(u.PasswordHash), false
		if u.PasswordHash == "" {
			hash = set.dummyHash
		}
		err := a.bcrypt.do(ctx, func() {
			a.metrics.passwordChecks.Inc()
			match = bcrypt.CompareHashAndPassword(hash, []byte(secret)) == nil
		})
		if err != nil || !match || u.PasswordHash == "" {
			return "", "", false, err
		}
		return u.Tenant, set.prints[user].password, true, nil
	}
	if known {
		if !password && u.APIKey != "" {
			return u.Tenant, set.prints[user].key, subtle.ConstantTimeCompare([]byte(u.APIKey), []byte(secret)) == 1, nil
		}
		return "", "", false, nil
	}
	if a.cfg.Dev && secret == DevAPIKey {
		tenant, err := a.cfg.Store.DevTenant(ctx, user)
		return tenant, "", err == nil, err
	}
	return "", "", false, nil
}

// serveValidate answers a token-validation request: the token's access if
// it is live and, when a tenant is named, of that tenant.
func (a *Auth) serveValidate(w http.ResponseWriter, r *http.Request, token, tenant string) {
	ti, err := a.lookup(r.Context(), token)
	if err != nil || (tenant != "" && ti.Tenant != tenant) {
		keystoneFault(w, http.StatusUnauthorized, "unauthorized", "The token is invalid or has expired.")
		return
	}
	writeJSON(w, http.StatusOK, a.accessFor(r, token, ti))
}

func (a *Auth) lookup(ctx context.Context, token string) (store.TokenInfo, error) {
	h := sha256.Sum256([]byte(token))
	if ti, ok := a.users.Load().static[h]; ok {
		ti.Expires = a.cfg.Clock().Add(a.cfg.TokenTTL)
		return ti, nil
	}
	if !issuedForm(token) {
		return store.TokenInfo{}, store.ErrTokenUnknown
	}
	ti, err := a.cfg.Store.Token(ctx, h)
	if err != nil {
		return ti, err
	}
	if !a.cfg.Clock().Before(ti.Expires) || !a.current(ti) {
		return ti, store.ErrTokenUnknown
	}
	return ti, nil
}

// serveRevoke revokes a token. The request must carry the token itself (or
// another live token of the same user) in X-Auth-Token.
func (a *Auth) serveRevoke(w http.ResponseWriter, r *http.Request, token string) {
	ctx := r.Context()
	target, err := a.lookup(ctx, token)
	if err != nil {
		keystoneFault(w, http.StatusNotFound, "itemNotFound", "The token could not be found.")
		return
	}
	caller, err := a.lookup(ctx, r.Header.Get("X-Auth-Token"))
	if err != nil || caller.User != target.User {
		keystoneFault(w, http.StatusUnauthorized, "unauthorized", "Send the token to revoke, or another token of its user, in X-Auth-Token.")
		return
	}
	h := sha256.Sum256([]byte(token))
	if _, static := a.users.Load().static[h]; static {
		keystoneFault(w, http.StatusBadRequest, "badRequest", "A static token from the users file cannot be revoked; remove it from the file.")
		return
	}
	if err := a.cfg.Store.DeleteToken(ctx, h); err != nil {
		keystoneFault(w, http.StatusServiceUnavailable, "serviceUnavailable", "The identity store is unavailable; try again.")
		return
	}
	a.cache.Store(h, cachedToken{TokenInfo: target, until: target.Expires, revoked: true})
	w.WriteHeader(http.StatusNoContent)
}

// accessFor builds the Keystone answer. The expiry uses a "-00:00" offset,
// which the Java client's date parser accepts (spec §3.1); the catalog holds
// the cloudServers entry the Node client takes the tenant from, and the
// compute endpoints the Python client does.
func (a *Auth) accessFor(r *http.Request, token string, ti store.TokenInfo) accessBody {
	base := (&request{r: r}).baseURL() + "/v1.0/" + ti.Tenant
	var openstack []endpoint
	for _, region := range []string{"DFW", "ORD", "IAD", "LON", "SYD", "HKG", "us", "uk"} {
		openstack = append(openstack, endpoint{Region: region, TenantID: ti.Tenant, PublicURL: base})
	}
	return accessBody{Access: access{
		Token: accessToken{
			ID:      token,
			Expires: ti.Expires.UTC().Format("2006-01-02T15:04:05.000") + "-00:00",
			Tenant:  map[string]string{"id": ti.Tenant, "name": ti.Tenant},
		},
		ServiceCatalog: []catalogEntry{
			{Name: "cloudServers", Type: "compute", Endpoints: []endpoint{{TenantID: ti.Tenant, PublicURL: base}}},
			{Name: "cloudServersOpenStack", Type: "compute", Endpoints: openstack},
			{Name: "serviceRegistry", Type: "rax:service-registry", Endpoints: []endpoint{{TenantID: ti.Tenant, PublicURL: base}}},
		},
		User: accessUser{ID: ti.User, Name: ti.User, Roles: []map[string]string{{"name": "identity:default"}}},
	}}
}
