package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/svcreg/svcreg/internal/testserver"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
)

// manualClock is a clock a test moves by hand.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// identity is a server with a users file's users (or --dev if none), the
// given login limits and a manual clock, whose metrics a test can read.
type identity struct {
	t     *testing.T
	st    testserver.Store
	base  string
	reg   *prometheus.Registry
	clock *manualClock
	auth  *server.Auth
}

func startIdentity(t *testing.T, kind string, users []server.User, limits server.AuthLimits) *identity {
	t.Helper()
	return startIdentityOn(t, testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1}), users, limits)
}

// startIdentityOn is startIdentity on the store st (another server's, as
// after a restart).
func startIdentityOn(t *testing.T, st testserver.Store, users []server.User, limits server.AuthLimits) *identity {
	t.Helper()
	return startIdentityWith(t, st, server.AuthConfig{Users: users, Dev: users == nil, Limits: limits})
}

// startIdentityWith is startIdentityOn with the rest of cfg: its Store,
// Clock and Registerer are the identity's.
func startIdentityWith(t *testing.T, st testserver.Store, cfg server.AuthConfig) *identity {
	t.Helper()
	id := &identity{t: t, st: st, reg: prometheus.NewRegistry(), clock: &manualClock{now: time.Now()}}
	cfg.Store, cfg.Clock, cfg.Registerer = st, id.clock.Now, id.reg
	id.auth = server.NewAuth(cfg)
	if err := id.auth.LoadRevocations(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(server.New(server.Config{Store: st, Auth: id.auth}))
	t.Cleanup(hs.Close)
	id.base = hs.URL
	return id
}

// login asks for a token with a password (or, if apiKey, an API key) and
// returns the answer.
func (id *identity) login(user, secret string, apiKey bool) *reply {
	id.t.Helper()
	creds := map[string]any{"passwordCredentials": map[string]string{"username": user, "password": secret}}
	if apiKey {
		creds = map[string]any{"RAX-KSKEY:apiKeyCredentials": map[string]string{"username": user, "apiKey": secret}}
	}
	return sendRequest(id.t, id.base, "POST", "/v2.0/tokens", map[string]any{"auth": creds})
}

// services is the status of a request to tenant's services with token.
func (id *identity) services(tenant, token string) int {
	id.t.Helper()
	return sendRequest(id.t, id.base, "GET", "/v1.0/"+tenant+"/services", nil, "X-Auth-Token", token).code
}

// token logs in and returns the token, failing the test unless it got one.
func (id *identity) token(user, secret string, apiKey bool) string {
	id.t.Helper()
	token, _ := id.login(user, secret, apiKey).want(200).access()
	return token
}

// access is the token and its tenant in a token request's answer.
func (r *reply) access() (token, tenant string) {
	r.t.Helper()
	var out struct {
		Access struct {
			Token struct {
				ID     string              `json:"id"`
				Tenant struct{ ID string } `json:"tenant"`
			} `json:"token"`
		} `json:"access"`
	}
	r.json(&out)
	return out.Access.Token.ID, out.Access.Token.Tenant.ID
}

// passwordChecks is how many bcrypt comparisons the server has run.
func (id *identity) passwordChecks() float64 {
	id.t.Helper()
	return testserver.Metric(id.t, id.reg, "svcreg_identity_password_checks_total")
}

// testHash is a bcrypt hash of password at the lowest cost, so that tests
// stay quick (the cost does not change what is checked).
func testHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func testUsers(t *testing.T) []server.User {
	return []server.User{
		{Name: "alice", Tenant: "1001", PasswordHash: testHash(t, "alice-pw")},
		{Name: "bob", Tenant: "1002", PasswordHash: testHash(t, "bob-pw"), APIKey: "bob-key"},
		{Name: "carol", Tenant: "1003", APIKey: "carol-key"},
	}
}

// A password request costs one bcrypt comparison whoever it names, so its
// time does not tell a known user from an unknown one; the answers are the
// same 401.
func TestLoginUnknownUserSpendsTheSameBcryptWork(t *testing.T) {
	onEachStore(t, testLoginUnknownUserSpendsTheSameBcryptWork)
}

func testLoginUnknownUserSpendsTheSameBcryptWork(t *testing.T, kind string) {
	t.Parallel()
	off := server.AuthLimits{FailuresPerAddress: -1, FailuresPerUser: -1}
	id := startIdentity(t, kind, testUsers(t), off)
	var bodies []string
	for _, user := range []string{"alice", "nobody", "carol"} { // known, unknown, known without a password
		before := id.passwordChecks()
		r := id.login(user, "wrong", false).want(401)
		bodies = append(bodies, string(r.body))
		if got := id.passwordChecks() - before; got != 1 {
			t.Errorf("a wrong password for %s ran %v bcrypt comparisons, want 1", user, got)
		}
	}
	if bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Errorf("401 bodies differ between known and unknown users: %q", bodies)
	}
	// The refusal names what was sent: a password, or an API key.
	if !strings.Contains(bodies[0], "Username or password is invalid.") {
		t.Errorf("a wrong password is answered %q", bodies[0])
	}
	if r := id.login("carol", "wrong", true).want(401); !strings.Contains(string(r.body), "Username or api key is invalid.") {
		t.Errorf("a wrong API key is answered %q", r.body)
	}
	id.token("alice", "alice-pw", false)
}

// Failed token requests from one client address are limited: once spent,
// the address is refused with 429 and Retry-After, even with the right
// password, until the budget refills.
func TestLoginFailuresPerAddress(t *testing.T) { onEachStore(t, testLoginFailuresPerAddress) }

func testLoginFailuresPerAddress(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, testUsers(t), server.AuthLimits{FailuresPerAddress: 3, FailuresPerUser: -1})
	for i := range 3 {
		id.login([]string{"alice", "bob", "nobody"}[i], "wrong", false).want(401)
	}
	checks := id.passwordChecks()
	r := id.login("alice", "alice-pw", false).want(429)
	if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "overLimit") {
		t.Errorf("429 without Retry-After or an overLimit body: %s %s", r.header, r.body)
	}
	if id.passwordChecks() != checks {
		t.Error("a refused request still ran a password check")
	}
	id.clock.Add(time.Minute)
	id.token("alice", "alice-pw", false)
}

// Failed requests naming one username are limited, whatever their address:
// the username is then refused without a password check, while other users
// still get in.
func TestLoginFailuresPerUser(t *testing.T) { onEachStore(t, testLoginFailuresPerUser) }

func testLoginFailuresPerUser(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, testUsers(t), server.AuthLimits{FailuresPerAddress: -1, FailuresPerUser: 2})
	id.login("alice", "wrong", false).want(401)
	id.login("alice", "guess", false).want(401)
	checks := id.passwordChecks()
	id.login("alice", "alice-pw", false).want(429)
	if id.passwordChecks() != checks {
		t.Error("a refused request still ran a password check")
	}
	id.token("bob", "bob-pw", false)
	id.token("carol", "carol-key", true)
	id.clock.Add(30 * time.Second) // one of the two refilled
	id.token("alice", "alice-pw", false)
}

// Tokens are stored until they expire, so one user's token issues are
// limited; other users are not affected.
func TestTokenIssuesPerUser(t *testing.T) { onEachStore(t, testTokenIssuesPerUser) }

func testTokenIssuesPerUser(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, nil, server.AuthLimits{IssuesPerUser: 3})
	var last string
	for range 3 {
		last = id.token("fleet", "dev", true)
	}
	// Past the limit, the last token issued to the user for that
	// credential, while it is valid; wrong credentials are refused as
	// ever.
	if got := id.token("fleet", "dev", true); got != last {
		t.Errorf("a login past the limit got a new token %.8s…, want the last one %.8s…", got, last)
	}
	id.login("fleet", "not-the-key", true).want(401)
	id.token("other", "dev", true)
	if got := testserver.Metric(t, id.reg, "svcreg_identity_tokens_reissued_total"); got != 1 {
		t.Errorf("svcreg_identity_tokens_reissued_total %v, want 1", got)
	}
	// Revoked, it is not given again: 429 until the limit allows one.
	sendRequest(t, id.base, "DELETE", "/v2.0/tokens/"+last, nil, "X-Auth-Token", last).want(204)
	id.login("fleet", "dev", true).want(429)
	id.clock.Add(20 * time.Minute) // one per 20 minutes at 3 an hour
	next := id.token("fleet", "dev", true)
	if next == last {
		t.Fatal("the revoked token was issued again")
	}
	if got := id.token("fleet", "dev", true); got != next {
		t.Errorf("past the limit again: a new token %.8s…, want %.8s…", got, next)
	}
}

// A user's last token is kept for each of its credentials: a login with
// the user's password (the dashboard's, say) past the issue limit does
// not take the API key's token from the clients that log in with the key
// before every call, which would get 429 until the limit allows another.
func TestLoginPastTheLimitKeepsEachCredentialsToken(t *testing.T) {
	onEachStore(t, testLoginPastTheLimitKeepsEachCredentialsToken)
}

func testLoginPastTheLimitKeepsEachCredentialsToken(t *testing.T, kind string) {
	t.Parallel()
	const key = "ops-api-key-0123456789abcdef"
	id := startIdentity(t, kind, []server.User{{Name: "ops", Tenant: "123456", APIKey: key, PasswordHash: testHash(t, "ops-pw")}},
		server.AuthLimits{IssuesPerUser: 3})
	var byKey string
	for range 3 {
		byKey = id.token("ops", key, true)
	}
	id.clock.Add(20 * time.Minute) // one more issue at 3 an hour
	byPassword := id.token("ops", "ops-pw", false)
	if byPassword == byKey {
		t.Fatal("a password login got the API key's token")
	}
	if got := id.token("ops", key, true); got != byKey {
		t.Errorf("an API-key login past the limit got %.8s…, want the key's last token %.8s…", got, byKey)
	}
	if got := id.token("ops", "ops-pw", false); got != byPassword {
		t.Errorf("a password login past the limit got %.8s…, want the password's last token %.8s…", got, byPassword)
	}
}

// A password login past the issue limit costs a bcrypt check that no
// issue pays for: such checks are bounded as failed password logins are
// (--login-failures-per-user a minute), so that one user's logins cannot
// keep the bcrypt gate full and every other password login waiting.
func TestPasswordLoginsPastTheLimitBounded(t *testing.T) {
	onEachStore(t, testPasswordLoginsPastTheLimitBounded)
}

func testPasswordLoginsPastTheLimitBounded(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, []server.User{{Name: "ops", Tenant: "123456", PasswordHash: testHash(t, "ops-pw")}},
		server.AuthLimits{IssuesPerUser: 1, FailuresPerUser: 3})
	first := id.token("ops", "ops-pw", false)
	before := id.passwordChecks()
	for range 3 {
		if got := id.token("ops", "ops-pw", false); got != first {
			t.Fatalf("past the limit: %.8s…, want the last token %.8s…", got, first)
		}
	}
	id.login("ops", "ops-pw", false).want(429)
	if got := id.passwordChecks() - before; got != 3 {
		t.Errorf("%v password checks past the limit, want 3", got)
	}
	id.clock.Add(time.Minute)
	if got := id.token("ops", "ops-pw", false); got != first {
		t.Errorf("a minute later: %.8s…, want the last token %.8s…", got, first)
	}
}

// A token revoked at another node is not given again past the limit,
// though this node checked it less than 30 s ago: the login is for a
// client that signed out (the dashboard) or lost its token, and a token
// that other nodes refuse would only get it 401s there.
func TestLoginPastTheLimitAfterARevocationElsewhere(t *testing.T) {
	onEachStore(t, testLoginPastTheLimitAfterARevocationElsewhere)
}

func testLoginPastTheLimitAfterARevocationElsewhere(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, nil, server.AuthLimits{IssuesPerUser: 1})
	other := startIdentityOn(t, id.st, nil, server.AuthLimits{IssuesPerUser: 1})
	login := func() (token, tenant string) {
		if r := id.login("fleet", "dev", true); r.code == 200 {
			return r.access()
		}
		return "", ""
	}
	token, tenant := login()
	if got, _ := login(); got != token { // past the limit: the same token
		t.Fatalf("past the limit: %.8s…, want %.8s…", got, token)
	}
	if got := id.services(tenant, token); got != 200 { // checked here now
		t.Fatalf("a call with the token: %d", got)
	}
	sendRequest(t, other.base, "DELETE", "/v2.0/tokens/"+token, nil, "X-Auth-Token", token).want(204)
	// Still past the limit, with no valid token to give again: a 429.
	id.login("fleet", "dev", true).want(429)
}

// The official Python client logs in before every call while its token
// is valid (spec §11.1), and its heartbeater ends at the first error.
// Before, the default issue limit (600 an hour, then one every 6 s) made
// such a client's login a 429 once past it: at a 3 s timeout's heartbeat
// every 1.8 s, the 857th, 26 minutes in, and the service timed out. Now
// every login past the limit gets a valid token.
func TestLoginBeforeEveryCall(t *testing.T) { onEachStore(t, testLoginBeforeEveryCall) }

func testLoginBeforeEveryCall(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, nil, server.AuthLimits{})
	tokens := map[string]bool{}
	for i := range 1000 {
		r := id.login("python", "dev", true)
		if r.code != 200 {
			t.Fatalf("login %d, %v after the first: %d %s", i+1, time.Duration(i)*1800*time.Millisecond, r.code, r.body)
		}
		token, tenant := r.access()
		if code := id.services(tenant, token); code != 200 {
			t.Fatalf("call %d with the token of its login: %d", i+1, code)
		}
		tokens[token] = true
		id.clock.Add(1800 * time.Millisecond)
	}
	// 600 at once, and one every 6 s of the 999 x 1.8 s after the first
	// (299 of them, give or take one at either end): the rest were the
	// last one again.
	if n := len(tokens); n < 898 || n > 900 {
		t.Errorf("%d tokens issued for 1,000 logins, want 600 and one every 6 s (899)", n)
	}
}

// A username is bounded and free of control characters: a 32 KB --dev
// username is a 400, not a store error and a 60 KB log line.
func TestLoginUsernameBound(t *testing.T) { onEachStore(t, testLoginUsernameBound) }

func testLoginUsernameBound(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, nil, server.AuthLimits{})
	for name, user := range map[string]string{
		"32 KB":   strings.Repeat("u", 32<<10),
		"256 B":   strings.Repeat("u", 256),
		"newline": "evil\nlevel=ERROR msg=forged",
		"empty":   "",
	} {
		if r := id.login(user, "dev", true); r.code != 400 || !strings.Contains(string(r.body), "badRequest") {
			t.Errorf("username %s: status %d, body %s; want 400 badRequest", name, r.code, r.body)
		}
	}
	id.token(strings.Repeat("u", 255), "dev", true)
}

// SetUsers (SIGHUP's re-read of the users file) switches the users at once:
// a removed user's issued and static tokens stop working, a changed tenant
// invalidates the old tenant's tokens, new users get in.
func TestSetUsersSwitchesUsersAndTheirTokens(t *testing.T) {
	onEachStore(t, testSetUsersSwitchesUsersAndTheirTokens)
}

func testSetUsersSwitchesUsersAndTheirTokens(t *testing.T, kind string) {
	t.Parallel()
	users := []server.User{
		{Name: "stays", Tenant: "2001", APIKey: "k1"},
		{Name: "leaves", Tenant: "2002", APIKey: "k2", Tokens: []string{"static-leaves"}},
		{Name: "moves", Tenant: "2003", APIKey: "k3"},
	}
	id := startIdentity(t, kind, users, server.AuthLimits{})
	tokens := map[string]string{}
	for _, u := range users {
		tokens[u.Name] = id.token(u.Name, u.APIKey, true)
	}
	if id.services("2002", "static-leaves") != 200 || id.services("2003", tokens["moves"]) != 200 {
		t.Fatal("tokens do not work before the switch")
	}
	if err := id.auth.SetUsers([]server.User{
		{Name: "stays", Tenant: "2001", APIKey: "k1"},
		{Name: "moves", Tenant: "2004", APIKey: "k3"},
		{Name: "joins", Tenant: "2005", APIKey: "k5"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token, tenant string
		want          int
	}{
		{tokens["stays"], "2001", 200},
		{tokens["leaves"], "2002", 401},
		{"static-leaves", "2002", 401},
		{tokens["moves"], "2003", 401},
		{tokens["moves"], "2004", 401},
	} {
		if got := id.services(tc.tenant, tc.token); got != tc.want {
			t.Errorf("token %.8s… on tenant %s: status %d, want %d", tc.token, tc.tenant, got, tc.want)
		}
	}
	id.login("leaves", "k2", true).want(401)
	if id.services("2005", id.token("joins", "k5", true)) != 200 {
		t.Error("a new user's token does not work")
	}
}

// --dev accepts anyone, so it has no users file to switch to.
func TestDevExcludesUsers(t *testing.T) { onEachStore(t, testDevExcludesUsers) }

func testDevExcludesUsers(t *testing.T, kind string) {
	t.Parallel()
	id := startIdentity(t, kind, nil, server.AuthLimits{})
	if err := id.auth.SetUsers(testUsers(t)); err == nil {
		t.Error("SetUsers in --dev mode succeeded")
	}
	defer func() {
		if recover() == nil {
			t.Error("NewAuth with Dev and Users did not panic")
		}
	}()
	server.NewAuth(server.AuthConfig{Dev: true, Users: testUsers(t)})
}

// A users file's static tokens are at least 20 characters: one is checked
// on every API request, where no failure budget bounds guessing it (a
// budget per address would let one client sending a wrong token lock out
// every client at that address, or behind the same proxy).
func TestUsersFileRefusesShortStaticTokens(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users.toml")
	for _, tc := range []struct {
		tokens string
		err    string
	}{
		{`["0123456789abcdef0123", "s3cr3t"]`, `user 1 (deploy): static token 2 is 6 characters; give each at least 20 random ones`},
		{`["0123456789abcdef0123"]`, ""},
	} {
		if err := os.WriteFile(path, []byte("[[user]]\nname = \"deploy\"\ntenant = \"123456\"\ntokens = "+tc.tokens+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := server.LoadUsers(path)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("tokens %s: %v", tc.tokens, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("tokens %s: %v, want an error saying %q", tc.tokens, err, tc.err)
		}
	}
}

// A password_hash that is not a bcrypt hash (a password written there,
// say) is refused, pointing to --hash-password, and without bcrypt's
// words on its length, nor any part of it.
func TestUsersFileRefusesAPasswordForItsHash(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users.toml")
	for _, tc := range []struct{ hash, want string }{
		{"plaintext", "user 1 (deploy): password_hash is not a bcrypt hash; make one with svcreg server --hash-password < pw.txt"},
		{strings.Repeat("s3cr3t", 10), "user 1 (deploy): password_hash is not a bcrypt hash; make one with svcreg server --hash-password"},
		{"$2a$99$" + strings.Repeat("x", 53), "password_hash is not a bcrypt hash (crypto/bcrypt: cost 99 is outside"},
	} {
		if err := os.WriteFile(path, []byte("[[user]]\nname = \"deploy\"\ntenant = \"123456\"\npassword_hash = \""+tc.hash+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := server.LoadUsers(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "too short") || strings.Contains(err.Error(), "'s'") {
			t.Errorf("password_hash %q: %v, want an error saying %q", tc.hash, err, tc.want)
		}
	}
}

// A users file's tenant may be written unquoted, as the number it is, and
// is taken as its decimal string; a value of another type is refused,
// naming its line, and the rest of the file is decoded as strictly.
func TestUsersFileTakesAnUnquotedTenant(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users.toml")
	for _, tc := range []struct {
		tenant, extra string
		want          string // the tenant, or the error
	}{
		{`123456`, "", "123456"},
		{`"123456"`, "", "123456"},
		{`1_000`, "", "1000"},
		{`0`, "", `tenant "0" must be a number from 1 to 2147483647`},
		{`2147483648`, "", `tenant "2147483648" must be a number from 1 to 2147483647`},
		{`1.5`, "", `line 3 (last key "user.tenant"): tenant 1.5 is not a whole number`},
		{`true`, "", `tenant true is not a whole number (not a number)`},
		{`1.0`, "", `tenant 1 is not a whole number (a number with a fraction or exponent)`},
		{`123456`, "tenant_id = 1\n", `unknown key "user.tenant_id"`},
	} {
		content := "[[user]]\nname = \"deploy\"\ntenant = " + tc.tenant + "\napi_key = \"0123456789abcdef0123\"\n" + tc.extra
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		users, err := server.LoadUsers(path)
		switch {
		case err == nil && (len(users) != 1 || users[0].Tenant != tc.want || users[0].Name != "deploy" || users[0].APIKey == ""):
			t.Errorf("tenant = %s: %v, want tenant %q", tc.tenant, users, tc.want)
		case err != nil && !strings.Contains(err.Error(), tc.want):
			t.Errorf("tenant = %s: %v, want %q", tc.tenant, err, tc.want)
		}
	}
}

// A users file with no user is refused: one being rewritten in place is
// empty for a moment, and taken on a SIGHUP it would revoke every user's
// tokens.
func TestUsersFileRefusesNoUser(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users.toml")
	for _, content := range []string{"", "# users\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := server.LoadUsers(path); err == nil || !strings.Contains(err.Error(), "holds no [[user]]") {
			t.Errorf("users file %q: %v; want it refused: no user", content, err)
		}
	}
}

// tokenLookups counts the tokens looked up in the identity store.
type tokenLookups struct {
	store.Identity
	n atomic.Int32
}

func (l *tokenLookups) Token(ctx context.Context, hash [32]byte) (store.TokenInfo, error) {
	l.n.Add(1)
	return l.Identity.Token(ctx, hash)
}

// Wrong tokens, however many from one address, never lock out a right
// one; and a token that is neither static nor of the issued form (64 hex
// digits) is refused without a store lookup, which on the etcd store is a
// round trip to etcd per request.
func TestWrongTokensLockNoOneOut(t *testing.T) { onEachStore(t, testWrongTokensLockNoOneOut) }

func testWrongTokensLockNoOneOut(t *testing.T, kind string) {
	t.Parallel()
	st := testserver.NewStore(t, testserver.Options{Store: kind, ReapInterval: -1})
	lookups := &tokenLookups{Identity: st}
	static := "0123456789abcdef0123456789abcdef"
	auth := server.NewAuth(server.AuthConfig{Store: lookups, Users: []server.User{{Name: "deploy", Tenant: "123456", Tokens: []string{static}}},
		Limits: server.AuthLimits{FailuresPerAddress: 3}})
	hs := httptest.NewServer(server.New(server.Config{Store: st, Auth: auth}))
	t.Cleanup(hs.Close)
	get := func(token string) *reply {
		return sendRequest(t, hs.URL, "GET", "/v1.0/123456/services", nil, "X-Auth-Token", token)
	}
	for i := range 20 {
		get(fmt.Sprintf("guess-%d", i)).want(401)
	}
	if n := lookups.n.Load(); n != 0 {
		t.Errorf("%d tokens of no known form were looked up in the store", n)
	}
	for i := range 5 {
		get(fmt.Sprintf("%064x", i)).want(401)
	}
	if n := lookups.n.Load(); n != 5 {
		t.Errorf("%d tokens of the issued form were looked up in the store, want 5", n)
	}
	get(static).want(200)
}

// A user name a login could not send (over 255 bytes, or with a control
// character) is refused in the users file: its revocation could not be
// recorded either (a bbolt key is at most 32 KiB).
func TestUsersFileRefusesUnusableNames(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users.toml")
	for _, name := range []string{strings.Repeat("n", 256), "tab\\tname", "bell\\u0007"} {
		if err := os.WriteFile(path, []byte("[[user]]\nname = \""+name+"\"\ntenant = \"123456\"\napi_key = \"0123456789abcdef0123\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := server.LoadUsers(path); err == nil || !strings.Contains(err.Error(), "without control characters") {
			t.Errorf("name %.20q…: %v, want it refused", name, err)
		}
	}
	if err := os.WriteFile(path, []byte("[[user]]\nname = \""+strings.Repeat("n", 255)+"\"\ntenant = \"123456\"\napi_key = \"0123456789abcdef0123\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := server.LoadUsers(path); err != nil {
		t.Errorf("a name of 255 bytes: %v", err)
	}
}

// A web page of another origin can make a visitor's browser ask for a
// token (a form, or a fetch without CORS): refused before any password is
// checked, so that such pages cannot spend a user's login failures and
// lock the user out. The dashboard's own requests, and clients that are
// not browsers, are served.
func TestCrossOriginTokenRequestsRefused(t *testing.T) {
	t.Parallel()
	id := startIdentity(t, "bolt", testUsers(t), server.AuthLimits{FailuresPerAddress: -1, FailuresPerUser: 2})
	body := map[string]any{"auth": map[string]any{"passwordCredentials": map[string]string{"username": "alice", "password": "wrong"}}}
	checks := id.passwordChecks()
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://other.registry.example"},
		{"Origin", "http://evil.example"},
		{"Origin", "null"},
		{"Origin", "http://evil.example", "X-Forwarded-Host", "registry.example, evil.example"},
		// Another port of the same host: another origin.
		{"Origin", "http://127.0.0.1:1"},
		{"Origin", "http://registry.example:9999", "X-Forwarded-Host", "registry.example:8080"},
	} {
		for range 3 {
			sendRequest(t, id.base, "POST", "/v2.0/tokens", body, h...).want(403)
		}
	}
	if id.passwordChecks() != checks {
		t.Error("a cross-origin token request ran a password check")
	}
	id.token("alice", "alice-pw", false) // no failure counted
	host := strings.TrimPrefix(id.base, "http://")
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "same-origin", "Origin", "http://proxy.example"}, // behind a proxy that rewrites Host
		{"Origin", "http://" + host},
		// Over plain HTTP, behind a proxy that passes the host on, with
		// or without its port.
		{"Origin", "https://registry.example", "X-Forwarded-Host", "registry.example"},
		{"Origin", "http://registry.example:8080", "X-Forwarded-Host", "registry.example, inner.example"},
		{"Origin", "http://registry.example:8080", "Forwarded", `for=192.0.2.1;host="registry.example:8080";proto=http, for=10.0.0.1`},
		{"Origin", "https://registry.example", "X-Forwarded-Host", "registry.example:443"},
	} {
		var out struct {
			Access struct{ Token struct{ ID string } }
		}
		r := sendRequest(t, id.base, "POST", "/v2.0/tokens", map[string]any{"auth": map[string]any{
			"passwordCredentials": map[string]string{"username": "alice", "password": "alice-pw"}}}, h...)
		r.want(200)
		r.json(&out)
		if out.Access.Token.ID == "" {
			t.Errorf("with %q: no token", h)
		}
	}
}
