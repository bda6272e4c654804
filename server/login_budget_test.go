package server_test

import (
	"context"
	"crypto/sha256"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// burst sends n wrong logins at once, the i-th naming user(i), and counts
// the answers by status.
func (id *identity) burst(n int, user func(i int) string, apiKey bool) map[int]int {
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := id.login(user(i), "guess", apiKey)
			mu.Lock()
			codes[r.code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return codes
}

// Guesses sent at once count against the failure budgets while they are
// checked: of 60 concurrent wrong passwords, only as many are checked as the
// budget holds, and the rest are refused with 429 before any bcrypt work.
func TestLoginConcurrentGuessesSpendTheBudget(t *testing.T) {
	onEachStore(t, testLoginConcurrentGuessesSpendTheBudget)
}

func testLoginConcurrentGuessesSpendTheBudget(t *testing.T, kind string) {
	t.Parallel()
	// A slower hash than the minimum and one check at a time keep the
	// guesses in flight together, as a burst against a real server is: 60
	// requests arrive well within the ten checks (cost 6 is about 200 ms
	// a check under -race; cost 8 took four times the CPU for the same).
	h, err := bcrypt.GenerateFromPassword([]byte("right"), 6)
	if err != nil {
		t.Fatal(err)
	}
	users := []server.User{{Name: "alice", Tenant: "1", PasswordHash: string(h)}}
	for _, tc := range []struct {
		name   string
		limits server.AuthLimits
		user   func(i int) string
	}{
		{"per user", server.AuthLimits{FailuresPerUser: 10, FailuresPerAddress: -1, BcryptConcurrency: 1, BcryptWait: time.Minute},
			func(int) string { return "alice" }},
		{"per address", server.AuthLimits{FailuresPerUser: -1, FailuresPerAddress: 10, BcryptConcurrency: 1, BcryptWait: time.Minute},
			func(i int) string { return []string{"alice", "nobody", "somebody"}[i%3] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := startIdentity(t, kind, users, tc.limits)
			codes := id.burst(60, tc.user, false)
			if codes[401] > 10 || id.passwordChecks() > 10 || codes[429] < 50 {
				t.Errorf("60 concurrent wrong passwords against a budget of 10: answers %v, %v password checks; want at most 10 checked (401), the rest 429",
					codes, id.passwordChecks())
			}
		})
	}
}

// A login that succeeds gives back the failure it reserved: successes alone
// never spend a budget.
func TestLoginSuccessesDoNotSpendTheBudget(t *testing.T) {
	onEachStore(t, testLoginSuccessesDoNotSpendTheBudget)
}

func testLoginSuccessesDoNotSpendTheBudget(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, testUsers(t), server.AuthLimits{FailuresPerUser: 2, FailuresPerAddress: 2})
	for range 5 {
		id.token("alice", "alice-pw", false)
		id.token("carol", "carol-key", true)
	}
	id.login("alice", "wrong", false).want(401)
	id.token("alice", "alice-pw", false)
}

// Failed password logins for a username do not lock out its API key: the
// right key still gets a token, and wrong API keys neither spend nor are
// refused by the username's budget. They spend the address's.
func TestLoginAPIKeyIsNotLockedOutByPasswordFailures(t *testing.T) {
	onEachStore(t, testLoginAPIKeyIsNotLockedOutByPasswordFailures)
}

func testLoginAPIKeyIsNotLockedOutByPasswordFailures(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, testUsers(t), server.AuthLimits{FailuresPerUser: 3, FailuresPerAddress: -1})
	for range 3 {
		id.login("bob", "wrong", false).want(401)
	}
	id.login("bob", "bob-pw", false).want(429)
	id.token("bob", "bob-key", true)
	for range 10 {
		id.login("carol", "wrong", true).want(401)
	}
	id.token("carol", "carol-key", true)

	byAddress := startIdentity(t, kind, testUsers(t), server.AuthLimits{FailuresPerUser: -1, FailuresPerAddress: 3})
	for range 3 {
		byAddress.login("carol", "wrong", true).want(401)
	}
	byAddress.login("carol", "carol-key", true).want(429)
}

// SetUsers revokes the tokens issued to a user before its API key or
// password hash was replaced or removed, or before it was removed (so that
// adding it back does not bring them back); tokens issued with the new
// credentials work, and users whose credentials did not change, or only
// gained one, keep theirs.
// A restart keeps it for the credential a token was issued with: the token
// records it, and a server started with the users file changed (after a
// SIGHUP, or instead of one) refuses the tokens of a credential replaced
// or removed since; adding one revokes nothing.
func TestCredentialChangesOutliveARestart(t *testing.T) {
	onEachStore(t, testCredentialChangesOutliveARestart)
}

func testCredentialChangesOutliveARestart(t *testing.T, kind string) {
	t.Parallel()
	pw := testHash(t, "pw")
	newPW := testHash(t, "new-pw")
	users := []server.User{
		{Name: "rekeyed", Tenant: "3001", APIKey: "old-key"},
		{Name: "repassworded", Tenant: "3002", PasswordHash: pw},
		{Name: "unchanged", Tenant: "3003", APIKey: "k", PasswordHash: pw},
		{Name: "gains-a-key", Tenant: "3004", PasswordHash: pw},
		{Name: "drops-its-key", Tenant: "3005", APIKey: "k", PasswordHash: pw},
		{Name: "drops-the-other", Tenant: "3006", APIKey: "k", PasswordHash: pw},
	}
	before := startIdentity(t, kind, users, server.AuthLimits{})
	tokens := map[string]string{
		"rekeyed":         before.token("rekeyed", "old-key", true),
		"repassworded":    before.token("repassworded", "pw", false),
		"unchanged":       before.token("unchanged", "k", true),
		"gains-a-key":     before.token("gains-a-key", "pw", false),
		"drops-its-key":   before.token("drops-its-key", "k", true),
		"drops-the-other": before.token("drops-the-other", "pw", false),
	}
	tenants := map[string]string{}
	for _, u := range users {
		tenants[u.Name] = u.Tenant
	}
	after := startIdentityOn(t, before.st, []server.User{
		{Name: "rekeyed", Tenant: "3001", APIKey: "new-key"},
		{Name: "repassworded", Tenant: "3002", PasswordHash: newPW},
		{Name: "unchanged", Tenant: "3003", APIKey: "k", PasswordHash: pw},
		{Name: "gains-a-key", Tenant: "3004", APIKey: "k", PasswordHash: pw},
		{Name: "drops-its-key", Tenant: "3005", PasswordHash: pw},
		{Name: "drops-the-other", Tenant: "3006", PasswordHash: pw},
	}, server.AuthLimits{})
	// A change of the credential a token was not issued with is not kept
	// past a restart: drops-the-other's token, issued with the password,
	// works again.
	for name, want := range map[string]int{"rekeyed": 401, "repassworded": 401, "drops-its-key": 401,
		"unchanged": 200, "gains-a-key": 200, "drops-the-other": 200} {
		if got := after.services(tenants[name], tokens[name]); got != want {
			t.Errorf("%s's token, after a restart with the file changed: status %d, want %d", name, got, want)
		}
	}
}

func TestSetUsersRevokesTokensIssuedBeforeACredentialChange(t *testing.T) {
	onEachStore(t, testSetUsersRevokesTokensIssuedBeforeACredentialChange)
}

func testSetUsersRevokesTokensIssuedBeforeACredentialChange(t *testing.T, kind string) {
	t.Parallel()
	pw, newPW := testHash(t, "pw"), testHash(t, "new-pw")
	users := []server.User{
		{Name: "rekeyed", Tenant: "3001", APIKey: "old-key"},
		{Name: "repassworded", Tenant: "3002", PasswordHash: pw},
		{Name: "unchanged", Tenant: "3003", APIKey: "k", PasswordHash: pw},
		{Name: "gains-a-key", Tenant: "3004", PasswordHash: pw},
		{Name: "drops-its-key", Tenant: "3005", APIKey: "k", PasswordHash: pw},
		{Name: "leaves-and-returns", Tenant: "3006", APIKey: "k"},
		{Name: "moves-and-returns", Tenant: "3007", APIKey: "k"},
	}
	id := startIdentity(t, kind, users, server.AuthLimits{})
	old := map[string]string{
		"rekeyed":            id.token("rekeyed", "old-key", true),
		"repassworded":       id.token("repassworded", "pw", false),
		"unchanged":          id.token("unchanged", "k", true),
		"gains-a-key":        id.token("gains-a-key", "pw", false),
		"drops-its-key":      id.token("drops-its-key", "k", true),
		"keeps-the-other":    id.token("drops-its-key", "pw", false),
		"leaves-and-returns": id.token("leaves-and-returns", "k", true),
		"moves-and-returns":  id.token("moves-and-returns", "k", true),
	}
	tenants := map[string]string{"keeps-the-other": "3005"}
	for _, u := range users {
		tenants[u.Name] = u.Tenant
	}
	for name, token := range old {
		if id.services(tenants[name], token) != 200 {
			t.Fatalf("%s's token does not work before the switch", name)
		}
	}
	id.clock.Add(time.Second)
	set := func(users []server.User) {
		id.setUsers(users)
		id.clock.Add(time.Second)
	}
	changed := []server.User{
		{Name: "rekeyed", Tenant: "3001", APIKey: "new-key"},
		{Name: "repassworded", Tenant: "3002", PasswordHash: newPW},
		{Name: "unchanged", Tenant: "3003", APIKey: "k", PasswordHash: pw},
		{Name: "gains-a-key", Tenant: "3004", APIKey: "k", PasswordHash: pw},
		{Name: "drops-its-key", Tenant: "3005", PasswordHash: pw},
	}
	set(append(changed, server.User{Name: "moves-and-returns", Tenant: "3008", APIKey: "k"}))
	set(append(changed, users[5], users[6]))
	// A token is revoked with the credential it was issued with; the
	// user's other credential, which still gets tokens, keeps its tokens.
	// A user removed or moved to another tenant loses every token it had,
	// also once it is back.
	for name, want := range map[string]int{
		"rekeyed": 401, "repassworded": 401, "drops-its-key": 401, "leaves-and-returns": 401, "moves-and-returns": 401,
		"unchanged": 200, "gains-a-key": 200, "keeps-the-other": 200,
	} {
		if got := id.services(tenants[name], old[name]); got != want {
			t.Errorf("%s's token from before the change: status %d, want %d", name, got, want)
		}
	}
	id.login("rekeyed", "old-key", true).want(401)
	for _, tc := range []struct{ user, secret string }{{"rekeyed", "new-key"}, {"leaves-and-returns", "k"}} {
		if got := id.services(tenants[tc.user], id.token(tc.user, tc.secret, true)); got != 200 {
			t.Errorf("%s's token from after the change: status %d, want 200", tc.user, got)
		}
	}
	if got := id.services("3002", id.token("repassworded", "new-pw", false)); got != 200 {
		t.Errorf("a token from the new password: status %d, want 200", got)
	}
}

// A revocation by SetUsers (SIGHUP) is recorded in the store and outlives
// a restart where the token's credential print does not tell: a user
// removed and added back with the same credentials, a user moved to
// another tenant and back, and a token issued before tokens kept the print
// of their credential. The user's other credential keeps its tokens.
func TestRevocationsOutliveARestart(t *testing.T) {
	onEachStore(t, testRevocationsOutliveARestart)
}

func testRevocationsOutliveARestart(t *testing.T, kind string) {
	t.Parallel()
	pw := testHash(t, "pw")
	users := []server.User{
		{Name: "drops-the-other", Tenant: "3001", APIKey: "k", PasswordHash: pw},
		{Name: "leaves-and-returns", Tenant: "3002", APIKey: "k"},
		{Name: "rekeyed-legacy", Tenant: "3003", APIKey: "old-key"},
		{Name: "unchanged", Tenant: "3004", APIKey: "k"},
		{Name: "moves-and-returns", Tenant: "3005", APIKey: "k"},
	}
	id := startIdentity(t, kind, users, server.AuthLimits{})
	tokens := map[string]string{
		"drops-the-other":    id.token("drops-the-other", "pw", false),
		"leaves-and-returns": id.token("leaves-and-returns", "k", true),
		"unchanged":          id.token("unchanged", "k", true),
		"moves-and-returns":  id.token("moves-and-returns", "k", true),
	}
	// A token of the form the server issues, stored as a release without
	// credential prints stored it.
	legacy := strings.Repeat("ab", 32)
	if err := id.st.PutToken(context.Background(), sha256.Sum256([]byte(legacy)),
		store.TokenInfo{User: "rekeyed-legacy", Tenant: "3003", Expires: id.clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tokens["rekeyed-legacy"] = legacy
	tenants := map[string]string{}
	for _, u := range users {
		tenants[u.Name] = u.Tenant
	}
	get := func(id *identity, name string) int {
		return id.services(tenants[name], tokens[name])
	}
	for name := range tokens {
		if code := get(id, name); code != 200 {
			t.Fatalf("%s's token before the change: status %d", name, code)
		}
	}
	id.clock.Add(time.Second)
	changed := []server.User{
		{Name: "drops-the-other", Tenant: "3001", PasswordHash: pw},
		{Name: "rekeyed-legacy", Tenant: "3003", APIKey: "new-key"},
		{Name: "unchanged", Tenant: "3004", APIKey: "k"},
	}
	final := append(slices.Clone(changed), users[1], users[4])
	for _, us := range [][]server.User{append(slices.Clone(changed), server.User{Name: "moves-and-returns", Tenant: "3006", APIKey: "k"}), final} {
		id.setUsers(us)
		id.clock.Add(time.Second)
	}
	// A token issued after the change is not revoked, now or later.
	tokens["after"] = id.token("leaves-and-returns", "k", true)
	tenants["after"] = "3002"
	want := map[string]int{"leaves-and-returns": 401, "rekeyed-legacy": 401, "moves-and-returns": 401,
		"drops-the-other": 200, "unchanged": 200, "after": 200}
	for name, code := range want {
		if got := get(id, name); got != code {
			t.Errorf("%s's token after SIGHUP: status %d, want %d", name, got, code)
		}
	}
	restarted := startIdentityOn(t, id.st, final, server.AuthLimits{})
	for name, code := range want {
		if got := get(restarted, name); got != code {
			t.Errorf("%s's token after a restart: status %d, want %d", name, got, code)
		}
	}
}

// refusingStore is a store whose RevokeUser fails while revoke is set,
// and whose PutToken while put is.
type refusingStore struct {
	testserver.Store
	revoke, put atomic.Bool
}

func (r *refusingStore) RevokeUser(ctx context.Context, user string, rev store.Revocation) error {
	if r.revoke.Load() {
		return store.ErrUnavailable
	}
	return r.Store.RevokeUser(ctx, user, rev)
}

func (r *refusingStore) PutToken(ctx context.Context, hash [32]byte, ti store.TokenInfo) error {
	if r.put.Load() {
		return store.ErrUnavailable
	}
	return r.Store.PutToken(ctx, hash, ti)
}

// A revocation the store could not record holds in memory, and is
// recorded by Run once the store takes it, so that a restart after that
// keeps it.
func TestUnrecordedRevocationIsTriedAgain(t *testing.T) {
	t.Parallel()
	st := &refusingStore{Store: testserver.NewStore(t, testserver.Options{Store: testserver.Bolt, ReapInterval: -1})}
	users := []server.User{{Name: "stays", Tenant: "3001", APIKey: "k"}, {Name: "leaves-and-returns", Tenant: "3002", APIKey: "k"}}
	id := startIdentityWith(t, st, server.AuthConfig{Users: users, SweepInterval: 20 * time.Millisecond})
	id.run()
	token := id.token("leaves-and-returns", "k", true)
	get := func(id *identity) int {
		return id.services("3002", token)
	}
	id.clock.Add(time.Second)
	st.revoke.Store(true)
	for _, us := range [][]server.User{users[:1], users} {
		if err := id.auth.SetUsers(us); err != nil {
			t.Fatal(err)
		}
	}
	if code := get(id); code != 401 {
		t.Fatalf("the token of a user removed and added back, the revocation unrecorded: status %d, want 401", code)
	}
	if r, err := st.Revocations(context.Background()); err != nil || len(r) != 0 {
		t.Fatalf("revocations recorded while the store refused them: %v, %v", r, err)
	}
	if n := id.unrecorded(); n != 1 {
		t.Fatalf("svcreg_identity_revocations_unrecorded while the store refuses: %v, want 1", n)
	}
	st.revoke.Store(false)
	eventually(t, "leaves-and-returns's revocation recorded once the store takes it", func() bool {
		r, err := st.Revocations(context.Background())
		_, ok := r["leaves-and-returns"]
		return err == nil && ok
	})
	eventually(t, "svcreg_identity_revocations_unrecorded back at 0", func() bool { return id.unrecorded() == 0 })
	if code := get(startIdentityOn(t, st, users, server.AuthLimits{})); code != 401 {
		t.Errorf("the token after a restart: status %d, want 401", code)
	}
}

// A revocation the store refused is recorded as the server stops, if the
// store takes it then, without waiting for Run's next try: a restart
// keeps it.
func TestStopRecordsRevocations(t *testing.T) {
	t.Parallel()
	st := &refusingStore{Store: testserver.NewStore(t, testserver.Options{Store: testserver.Bolt, ReapInterval: -1})}
	users := []server.User{{Name: "u", Tenant: "3001", APIKey: "k1"}}
	id := startIdentityWith(t, st, server.AuthConfig{Users: users, SweepInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- id.auth.Run(ctx) }()
	token := id.token("u", "k1", true)
	id.clock.Add(time.Second)
	st.revoke.Store(true)
	for _, us := range [][]server.User{{{Name: "u", Tenant: "3001", APIKey: "k2"}}, users} {
		if err := id.auth.SetUsers(us); err != nil {
			t.Fatal(err)
		}
	}
	st.revoke.Store(false)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := id.unrecorded(); n != 0 {
		t.Errorf("svcreg_identity_revocations_unrecorded once stopped: %v, want 0", n)
	}
	if got := startIdentityOn(t, st, users, server.AuthLimits{}).services("3001", token); got != 401 {
		t.Errorf("a token of k1 from before it was replaced, after a restart: status %d, want 401", got)
	}
}

// setUsers gives the server users, as a SIGHUP with that users file does,
// and fails the test if it refuses them. It returns once the store has
// taken the revocations that made, as a restart would see them: SetUsers
// tries for 2 s only, which a loaded test machine's store may take, and
// the same users again try again (as another SIGHUP does).
func (id *identity) setUsers(users []server.User) {
	id.t.Helper()
	if err := id.auth.SetUsers(users); err != nil {
		id.t.Fatal(err)
	}
	eventually(id.t, "the store took the revocations of a users file read again", func() bool {
		if id.unrecorded() == 0 {
			return true
		}
		if err := id.auth.SetUsers(users); err != nil {
			id.t.Fatal(err)
		}
		return false
	})
}

// unrecorded is how many users' revocations the store has not taken yet.
func (id *identity) unrecorded() float64 {
	id.t.Helper()
	return testserver.Metric(id.t, id.reg, "svcreg_identity_revocations_unrecorded")
}

// removeAndReturn removes user u and adds it back, as two SIGHUPs: every
// token issued to it before is revoked.
func (id *identity) removeAndReturn(users []server.User, u int) {
	id.t.Helper()
	others := slices.Delete(slices.Clone(users), u, u+1)
	for _, us := range [][]server.User{others, users} {
		id.setUsers(us)
	}
}

// A revocation holds across a restart with another --token-ttl: a shorter
// one does not make a token from before it look issued after it, nor a
// longer one a token from after it look issued before it.
func TestRevocationsAcrossATokenLifetimeChange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		before     time.Duration
		after      time.Duration
		tokenFirst bool // the token is issued before the change
		want       int
	}{
		{"shorter, a token from before", 24 * time.Hour, time.Hour, true, 401},
		{"longer, a token from after", time.Hour, 24 * time.Hour, false, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := testserver.NewStore(t, testserver.Options{Store: testserver.Bolt, ReapInterval: -1})
			users := []server.User{{Name: "u", Tenant: "3001", APIKey: "k"}}
			id := startIdentityWith(t, st, server.AuthConfig{Users: users, TokenTTL: tc.before})
			var token string
			if tc.tokenFirst {
				token = id.token("u", "k", true)
			}
			id.clock.Add(time.Second)
			id.removeAndReturn(users, 0)
			id.clock.Add(time.Second)
			if !tc.tokenFirst {
				token = id.token("u", "k", true)
			}
			restarted := startIdentityWith(t, st, server.AuthConfig{Users: users, TokenTTL: tc.after})
			if got := restarted.services("3001", token); got != tc.want {
				t.Errorf("the token after a restart with --token-ttl %v (was %v): status %d, want %d", tc.after, tc.before, got, tc.want)
			}
		})
	}
}

// revocationsUnread is a store whose Revocations fails the first n times.
type revocationsUnread struct {
	testserver.Store
	n atomic.Int32
}

func (r *revocationsUnread) Revocations(ctx context.Context) (map[string]store.Revocation, error) {
	if r.n.Add(-1) >= 0 {
		return nil, store.ErrUnavailable
	}
	return r.Store.Revocations(ctx)
}

// A server whose store does not answer at first reads the revocations once
// it does, before it serves.
func TestRevocationsReadAgainAtStart(t *testing.T) {
	t.Parallel()
	st, users := oneUser(t)
	id := startIdentityOn(t, st, users, server.AuthLimits{})
	token := id.token("u", "k", true)
	id.clock.Add(time.Second)
	id.removeAndReturn(users, 0)
	unread := &revocationsUnread{Store: st}
	unread.n.Store(2)
	restarted := startIdentityOn(t, unread, users, server.AuthLimits{})
	if got := restarted.services("3001", token); got != 401 {
		t.Errorf("the token after a restart whose first reads of the revocations failed: status %d, want 401", got)
	}
	if n := unread.n.Load(); n >= 0 {
		t.Errorf("the revocations were read %d times fewer than 3", n+1)
	}
}

// A revocation made after a restart with a shorter --token-ttl still
// covers the longer-lived tokens of the run before, past the new lifetime.
func TestRevocationAfterAShorterTokenLifetime(t *testing.T) {
	t.Parallel()
	st, users := oneUser(t)
	token := startIdentityWith(t, st, server.AuthConfig{Users: users, TokenTTL: 24 * time.Hour}).token("u", "k", true)
	id := startIdentityWith(t, st, server.AuthConfig{Users: users, TokenTTL: time.Hour})
	get := func() int {
		return id.services("3001", token)
	}
	if code := get(); code != 200 {
		t.Fatalf("the token of the run before: status %d, want 200", code)
	}
	id.clock.Add(time.Second)
	id.removeAndReturn(users, 0)
	id.clock.Add(2 * time.Hour)
	id.setUsers(users)
	if code := get(); code != 401 {
		t.Errorf("the token two hours after its user's revocation, past this run's token lifetime: status %d, want 401", code)
	}
	if code := startIdentityWith(t, st, server.AuthConfig{Users: users, TokenTTL: time.Hour}).services("3001", token); code != 401 {
		t.Errorf("the token after another restart: status %d, want 401", code)
	}
}

// Two nodes read the same users file at their own SIGHUP, a minute apart,
// as an operator rotating a key does. A token issued at the first with the
// new key, or with the user's other credential, in between, works at both
// and goes on working after a restart: the second node's later reload does
// not revoke it.
func TestRollingReloadKeepsNewTokens(t *testing.T) {
	onEachStore(t, testRollingReloadKeepsNewTokens)
}

func testRollingReloadKeepsNewTokens(t *testing.T, kind string) {
	t.Parallel()
	pw := testHash(t, "pw")
	users := []server.User{{Name: "carol", Tenant: "3001", APIKey: "old-key", PasswordHash: pw}}
	a := startIdentity(t, kind, users, server.AuthLimits{})
	b := startIdentityOn(t, a.st, users, server.AuthLimits{})
	rotated := []server.User{{Name: "carol", Tenant: "3001", APIKey: "new-key", PasswordHash: pw}}
	a.setUsers(rotated)
	a.clock.Add(time.Second)
	tokens := map[string]string{"new key": a.token("carol", "new-key", true), "password": a.token("carol", "pw", false)}
	b.clock.Add(time.Minute)
	b.setUsers(rotated)
	for what, token := range tokens {
		for node, id := range map[string]*identity{"the first": a, "the second": b, "the first, restarted": startIdentityOn(t, a.st, rotated, server.AuthLimits{})} {
			if got := id.services("3001", token); got != 200 {
				t.Errorf("a token of the %s issued between the reloads, at %s node: status %d, want 200", what, node, got)
			}
		}
	}
}

// A token that expires further ahead than the longest token lifetime was
// issued by an earlier release under a longer --token-ttl: it is refused,
// as no revocation would cover it. One within the lifetime is taken, and
// covered by a revocation made after it.
func TestTokensPastTheLongestLifetime(t *testing.T) {
	t.Parallel()
	st, users := oneUser(t)
	id := startIdentityOn(t, st, users, server.AuthLimits{})
	put := func(text string, expires time.Duration) string {
		token := strings.Repeat(text, 64/len(text))
		if err := st.PutToken(context.Background(), sha256.Sum256([]byte(token)),
			store.TokenInfo{User: "u", Tenant: "3001", Expires: id.clock.Now().Add(expires), KeyPrint: tokenKeyPrint(t, id, "u", "k")}); err != nil {
			t.Fatal(err)
		}
		return token
	}
	long, within := put("ab", 365*24*time.Hour), put("cd", 20*24*time.Hour)
	get := func(token string) int {
		return id.services("3001", token)
	}
	if got := get(long); got != 401 {
		t.Errorf("a token expiring in a year: status %d, want 401", got)
	}
	if got := get(within); got != 200 {
		t.Fatalf("a token expiring in 20 days: status %d, want 200", got)
	}
	id.clock.Add(time.Second)
	id.removeAndReturn(users, 0)
	if got := get(within); got != 401 {
		t.Errorf("the token expiring in 20 days, its user removed and added back: status %d, want 401", got)
	}
}

// tokenKeyPrint is the key print a token issued to user with key carries
// at id, read from a token id issues.
func tokenKeyPrint(t *testing.T, id *identity, user, key string) string {
	t.Helper()
	token := id.token(user, key, true)
	ti, err := id.st.Token(context.Background(), sha256.Sum256([]byte(token)))
	if err != nil || ti.KeyPrint == "" {
		t.Fatalf("the issued token's record: %+v, %v; want a key print", ti, err)
	}
	return ti.KeyPrint
}

// A login answered 503 because the token could not be stored issued
// nothing, and spends none of the user's token issues.
func TestUnstoredTokenSpendsNoIssue(t *testing.T) {
	t.Parallel()
	st := &refusingStore{Store: testserver.NewStore(t, testserver.Options{Store: testserver.Bolt, ReapInterval: -1})}
	id := startIdentityOn(t, st, []server.User{{Name: "u", Tenant: "3001", APIKey: "k"}}, server.AuthLimits{IssuesPerUser: 2})
	st.put.Store(true)
	for range 3 {
		id.login("u", "k", true).want(503)
	}
	st.put.Store(false)
	id.login("u", "k", true).want(200)
}

// A key replaced and then put back does not bring back the tokens issued
// with it before it was replaced (rotating a key is a way to end a leaked
// token), before or after a restart; a token issued with it once it is
// back works.
func TestCredentialBackKeepsOldTokensRevoked(t *testing.T) {
	onEachStore(t, testCredentialBackKeepsOldTokensRevoked)
}

func testCredentialBackKeepsOldTokensRevoked(t *testing.T, kind string) {
	t.Parallel()
	users := []server.User{{Name: "u", Tenant: "3001", APIKey: "k1"}}
	id := startIdentity(t, kind, users, server.AuthLimits{})
	old := id.token("u", "k1", true)
	for _, us := range [][]server.User{{{Name: "u", Tenant: "3001", APIKey: "k2"}}, users} {
		id.clock.Add(time.Second)
		id.setUsers(us)
	}
	id.clock.Add(time.Second)
	fresh := id.token("u", "k1", true)
	for node, at := range map[string]*identity{"after the key is back": id, "after a restart": startIdentityOn(t, id.st, users, server.AuthLimits{})} {
		for token, want := range map[string]int{old: 401, fresh: 200} {
			if got := at.services("3001", token); got != want {
				t.Errorf("%s, a token of k1 issued %s: status %d, want %d", node, map[bool]string{true: "before it was replaced", false: "once it was back"}[token == old], got, want)
			}
		}
	}
}

// A user moved to another tenant node by node: a token of the new tenant
// issued at the first node before the second reloads works at both, also
// after a restart; the old tenant's tokens stay refused once the user is
// moved back.
func TestRollingTenantChange(t *testing.T) {
	onEachStore(t, testRollingTenantChange)
}

func testRollingTenantChange(t *testing.T, kind string) {
	t.Parallel()
	users := []server.User{{Name: "carol", Tenant: "3001", APIKey: "k"}}
	a := startIdentity(t, kind, users, server.AuthLimits{})
	b := startIdentityOn(t, a.st, users, server.AuthLimits{})
	oldToken := a.token("carol", "k", true)
	moved := []server.User{{Name: "carol", Tenant: "3002", APIKey: "k"}}
	a.clock.Add(time.Second)
	a.setUsers(moved)
	a.clock.Add(time.Second)
	newToken := a.token("carol", "k", true)
	b.clock.Add(time.Minute)
	b.setUsers(moved)
	for node, id := range map[string]*identity{"the first": a, "the second": b, "the first, restarted": startIdentityOn(t, a.st, moved, server.AuthLimits{})} {
		if got := id.services("3002", newToken); got != 200 {
			t.Errorf("a token of the new tenant issued between the reloads, at %s node: status %d, want 200", node, got)
		}
	}
	b.setUsers(users) // moved back
	if got := b.services("3001", oldToken); got != 401 {
		t.Errorf("a token of the old tenant, the user moved back: status %d, want 401", got)
	}
}

// At the longest token lifetime, a token issued at a node whose clock is
// ahead works at a node whose clock is behind: a token that records when
// it was issued is judged by its own lifetime, not by the other clock.
func TestLongestLifetimeAcrossClocks(t *testing.T) {
	t.Parallel()
	st, users := oneUser(t)
	ahead := startIdentityWith(t, st, server.AuthConfig{Users: users, TokenTTL: server.MaxTokenTTL})
	behind := startIdentityWith(t, st, server.AuthConfig{Users: users, TokenTTL: server.MaxTokenTTL})
	ahead.clock.Add(time.Minute)
	token := ahead.token("u", "k", true)
	if got := behind.services("3001", token); got != 200 {
		t.Errorf("a token of the longest lifetime from a node a minute ahead: status %d, want 200", got)
	}
}

// A token from a node whose clock is far ahead is refused: it would
// expire past the longest lifetime here, and no revocation made here
// would cover it.
func TestTokenFromAClockFarAhead(t *testing.T) {
	t.Parallel()
	st, users := oneUser(t)
	ahead := startIdentityOn(t, st, users, server.AuthLimits{})
	good := startIdentityOn(t, st, users, server.AuthLimits{})
	ahead.clock.Add(365 * 24 * time.Hour)
	token := ahead.token("u", "k", true)
	if got := good.services("3001", token); got != 401 {
		t.Errorf("a token from a node a year ahead: status %d, want 401", got)
	}
}

// A user's key replaced every day keeps in its recorded revocation only
// the prints that may still be on a live token, those of the last token
// lifetime.
func TestRetiredPrintsArePruned(t *testing.T) {
	t.Parallel()
	var storeClock testserver.Clock
	st := testserver.NewStore(t, testserver.Options{Store: testserver.Bolt, ReapInterval: -1, Clock: &storeClock})
	users := func(d int) []server.User {
		return []server.User{{Name: "u", Tenant: "3001", APIKey: "k" + strconv.Itoa(d)}}
	}
	id := startIdentityOn(t, st, users(0), server.AuthLimits{})
	const days = 45
	for d := 1; d <= days; d++ {
		id.clock.Add(24 * time.Hour)
		storeClock.Advance(24 * time.Hour)
		id.setUsers(users(d))
	}
	r, err := st.Revocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The prints retired in the last 30 days, give or take the edge.
	if n := len(r["u"].Retired); n < 29 || n > 31 {
		t.Errorf("retired prints recorded after %d daily changes: %d, want about 30", days, n)
	}
}

// revocationReads counts the reads of the recorded revocations.
type revocationReads struct {
	testserver.Store
	n atomic.Int32
}

func (r *revocationReads) Revocations(ctx context.Context) (map[string]store.Revocation, error) {
	r.n.Add(1)
	return r.Store.Revocations(ctx)
}

// A revocation recorded by a node whose clock was far ahead is taken as
// made when it is first read here, and stays so at each later read, also
// once this clock has caught up with the time the store holds: tokens
// issued after it work.
func TestRevocationFromAClockFarAhead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		ahead, later time.Duration // the other clock's lead; how far this one moves on
	}{
		{"a year ahead", 365 * 24 * time.Hour, time.Hour},
		{"an hour ahead, caught up with", time.Hour, 58 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st0, users := oneUser(t)
			st := &revocationReads{Store: st0}
			ahead := startIdentityOn(t, st, users, server.AuthLimits{})
			ahead.clock.Add(tc.ahead)
			ahead.removeAndReturn(users, 0)
			id := startIdentityWith(t, st, server.AuthConfig{Users: users, SweepInterval: 10 * time.Millisecond})
			id.run()
			token := id.token("u", "k", true)
			id.clock.Add(tc.later)
			reads := st.n.Load()
			eventually(t, "three more reads of the revocations", func() bool { return st.n.Load() >= reads+3 })
			if got := id.services("3001", token); got != 200 {
				t.Errorf("a token issued after the revocation, %v later, read again since: status %d, want 200", tc.later, got)
			}
		})
	}
}

// A token issued at a node after it read a revocation made by a clock a
// little ahead of its own (within the allowance) is after the
// revocation.
func TestTokenAfterARevocationFromAClockAhead(t *testing.T) {
	t.Parallel()
	st, users := oneUser(t)
	ahead := startIdentityOn(t, st, users, server.AuthLimits{})
	ahead.clock.Add(2 * time.Minute)
	ahead.removeAndReturn(users, 0)
	id := startIdentityOn(t, st, users, server.AuthLimits{}) // reads it at start
	token := id.token("u", "k", true)
	if got := id.services("3001", token); got != 200 {
		t.Errorf("a token issued after reading a revocation made 2 minutes ahead: status %d, want 200", got)
	}
}

// A node's clock stepping back after a revocation does not put the
// tokens it issues next before the revocation.
func TestClockStepBackAfterARevocation(t *testing.T) {
	t.Parallel()
	users := []server.User{{Name: "u", Tenant: "3001", APIKey: "k1"}}
	id := startIdentity(t, testserver.Bolt, users, server.AuthLimits{})
	id.removeAndReturn(users, 0)
	id.clock.Add(-10 * time.Second)
	token := id.token("u", "k1", true)
	if got := id.services("3001", token); got != 200 {
		t.Errorf("a token issued after a revocation, the clock stepped back 10s: status %d, want 200", got)
	}
}

// holdingStore holds the next Token read, once hold is set, after reading
// the record: reached is closed then, and the read returns once release
// is closed.
type holdingStore struct {
	testserver.Store
	hold             atomic.Bool
	reached, release chan struct{}
}

func (h *holdingStore) Token(ctx context.Context, hash [32]byte) (store.TokenInfo, error) {
	ti, err := h.Store.Token(ctx, hash)
	if h.hold.CompareAndSwap(true, false) {
		close(h.reached)
		<-h.release
	}
	return ti, err
}

// A request that read a token before it was revoked (DELETE) does not put
// it in the cache after the revocation: the next request is refused.
func TestRevokedTokenStaysOutOfTheCache(t *testing.T) {
	t.Parallel()
	st := &holdingStore{Store: testserver.NewStore(t, testserver.Options{Store: testserver.Bolt, ReapInterval: -1}),
		reached: make(chan struct{}), release: make(chan struct{})}
	id := startIdentityOn(t, st, []server.User{{Name: "u", Tenant: "3001", APIKey: "k"}}, server.AuthLimits{})
	token := id.token("u", "k", true)
	get := func() int {
		return id.services("3001", token)
	}
	st.hold.Store(true)
	inFlight := make(chan int, 1)
	go func() { inFlight <- get() }()
	<-st.reached
	if got := sendRequest(t, id.base, "DELETE", "/v2.0/tokens/"+token, nil, "X-Auth-Token", token).code; got != 204 {
		t.Fatalf("DELETE: status %d, want 204", got)
	}
	close(st.release)
	<-inFlight // read before the revocation: either answer
	if got := get(); got != 401 {
		t.Errorf("the token after its revocation, a request that read it before in flight: status %d, want 401", got)
	}
}

// A node refuses what another revoked by time within its sweep interval
// (a minute by default), without a reload or a restart of its own.
func TestRevocationsReachTheOtherNodes(t *testing.T) {
	onEachStore(t, testRevocationsReachTheOtherNodes)
}

func testRevocationsReachTheOtherNodes(t *testing.T, kind string) {
	t.Parallel()
	users := []server.User{{Name: "u", Tenant: "3001", APIKey: "k"}}
	a := startIdentity(t, kind, users, server.AuthLimits{})
	b := startIdentityWith(t, a.st, server.AuthConfig{Users: users, SweepInterval: 20 * time.Millisecond})
	b.run()
	token := b.token("u", "k", true)
	a.clock.Add(time.Second)
	a.removeAndReturn(users, 0)
	eventually(t, "the other node to refuse the token of a user removed and added back", func() bool { return b.services("3001", token) == 401 })
}

// run runs the identity's background work (Auth.Run) until the test ends.
func (id *identity) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- id.auth.Run(ctx) }()
	id.t.Cleanup(func() { cancel(); <-done })
}

// oneUser returns an embedded store of its own and a users file of one
// user, u of tenant 3001 with API key k.
func oneUser(t *testing.T) (testserver.Store, []server.User) {
	return testserver.NewStore(t, testserver.Options{Store: testserver.Bolt, ReapInterval: -1}), []server.User{{Name: "u", Tenant: "3001", APIKey: "k"}}
}

// A revocation made after a token is after it, also when the clock
// stepped back in between.
func TestClockStepBackBeforeARevocation(t *testing.T) {
	t.Parallel()
	st, users := oneUser(t)
	id := startIdentityOn(t, st, users, server.AuthLimits{})
	token := id.token("u", "k", true)
	id.clock.Add(-10 * time.Second)
	id.removeAndReturn(users, 0)
	if got := id.services("3001", token); got != 401 {
		t.Errorf("a token issued before a revocation, the clock stepped back 10s in between: status %d, want 401", got)
	}
}
