package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/svcreg/svcreg/internal/fsperm"
	"github.com/svcreg/svcreg/internal/logging"
	"github.com/svcreg/svcreg/internal/statuspage"
	"github.com/svcreg/svcreg/internal/supervise"
	"github.com/svcreg/svcreg/internal/ui"
	"github.com/svcreg/svcreg/render"
	"github.com/svcreg/svcreg/server"
	"github.com/svcreg/svcreg/server/store"
	"github.com/svcreg/svcreg/server/store/boltstore"
	"github.com/svcreg/svcreg/server/store/etcdstore"
)

const serverDescription = `
Serves the Service Registry API (/v1.0), a Keystone-v2-compatible identity
endpoint (POST /v2.0/tokens), /healthz, /metrics (or on --metrics-listen
alone) and a dashboard at /ui/ (--ui=false turns it off). State is kept in
one bbolt file under --data-dir; every acknowledged write is synced to disk.

With --etcd-endpoints, state is kept in an etcd cluster instead, and several
svcreg server processes over the same cluster (and --etcd-prefix) serve one
registry: any of them answers any request. See docs/etcd.md.

Authenticate with users from --users (a TOML file of [[user]] entries with
name, tenant, api_key, password_hash, tokens; static tokens are at least 20
characters, openssl rand -hex 16), or start with --dev, in which
any username authenticates with the API key "dev" and gets a tenant of its own
("dev" gets 7777). --dev accepts anyone: never use it where others can reach
the server, and never together with --users (refused).

The identity endpoint limits failed token requests per client address and
per username, token issues per user, and the password checks (bcrypt) that
run at once: --login-failures-per-address, --login-failures-per-user,
--token-issues-per-user, --bcrypt-concurrency; see docs/security.md.

SIGTERM or SIGINT stops the server gracefully (exit status 0): waiting
long-polls are answered, in-flight requests finish, heartbeat state is
written. SIGHUP reads --users and --tls-cert/--tls-key again and switches to
them only if they are all valid; otherwise it logs why and keeps the ones in
use. The tokens of removed users, of users moved to another tenant, and
those issued with an api_key or password_hash that was replaced or
removed stop working at once, and stay refused after a restart and once
the user (or the credential) is back; see docs/security.md.`

type serverFlags struct {
	listen, dataDir, users string
	metricsListen          string
	readyFile              string
	dev                    bool
	tlsCert, tlsKey        string
	logFormat, logLevel    string
	tokenTTL               time.Duration
	reapInterval           time.Duration
	retention              time.Duration
	maxWaiters             int
	maxListReadsWaiting    int
	maxUnsentBytes         int64
	conns                  connFlags
	serviceLimit           int
	configLimit            int
	rateLimit              int
	writeRate              float64
	writeBurst             int
	maxEvents              int
	maxEventBytes          int64
	hashPassword           bool
	ui                     bool
	login                  server.AuthLimits
	etcd                   etcdFlags
	db                     dbFlags
}

// connFlags are the limits on client connections (server.Config).
type connFlags struct {
	maxConns, maxWaiters      int
	maxIdle, maxIdlePerTenant int
	unauthIdleTimeout         time.Duration
}

// defaultPeerListen is --etcd-peer-listen's default: a free port on
// loopback, enough for nodes on one machine.
const defaultPeerListen = "127.0.0.1:0"

// maxEtcdRequestTimeout is the longest --etcd-request-timeout: a request
// waits for its etcd calls, and a heartbeat at a node that takes over a
// dead node's services waits two of them.
const maxEtcdRequestTimeout = 30 * time.Second

// etcdFlags are the --etcd-* flags: where the etcd store's cluster is.
type etcdFlags struct {
	endpoints, prefix  string
	cert, key, cacert  string
	username, password string
	heartbeatSlack     time.Duration
	heartbeatLinger    time.Duration
	copyLinger         time.Duration
	nodeTTL            time.Duration
	requestTimeout     time.Duration
	peerListen         string
	peerAdvertise      string
}

func runServer(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	// A SIGHUP from here on (a reload just after the start) is kept for
	// once the server serves, not the end of the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var f serverFlags
	fs := newFlagSet("server", "svcreg server [--dev | --users FILE] [flags]", serverDescription, stdout)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8420", "`address` to listen on")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "`address` on which to serve /metrics alone, instead of on --listen: the\nmetrics count every account's requests and events, and --listen is open to\nevery account (and to clients without one). Plain HTTP (no --tls-cert),\n16 connections at once: give a loopback or internal address")
	fs.StringVar(&f.readyFile, "ready-file", "", "`file` to write the server's base URL to once it listens (with --listen 127.0.0.1:0,\nhow a script or test learns the port); removed when the server stops")
	fs.StringVar(&f.dataDir, "data-dir", "./svcreg-data", "`directory` holding the database")
	fs.BoolVar(&f.dev, "dev", false, "development mode: any username authenticates with API key \"dev\"; requests must\nname it by IP address, localhost, the host name or a name without a dot (others\nget 421), whatever address they reach")
	fs.StringVar(&f.users, "users", "", "users `file` (TOML) for the identity endpoint")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM); serve HTTPS with --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key `file` (PEM)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.DurationVar(&f.tokenTTL, "token-ttl", 24*time.Hour, "how long an issued API token lives (1s to 720h)")
	fs.DurationVar(&f.reapInterval, "reap-interval", 250*time.Millisecond, "how often to time out services past their deadline;\n0 leaves only the lazy timeouts on reads")
	fs.DurationVar(&f.retention, "retention", 30*24*time.Hour, "how long events are kept (at least 1m)")
	fs.IntVar(&f.maxWaiters, "max-waiters", 0, "most long-polls one tenant may have waiting\n(0: half of --max-waiters-total, at most 20000)")
	fs.IntVar(&f.conns.maxWaiters, "max-waiters-total", 0, "most long-polls waiting in all tenants (0: 3/4 of --max-conns);\npast it, a tenant holding two fewer than the one holding the most\ntakes one of its slots (that poll is answered early)")
	fs.IntVar(&f.maxListReadsWaiting, "max-list-reads-waiting", 0, "most list reads (pages of services, configuration values or events) of\none tenant waiting for its turn, each holding its connection; past it\none is refused at once, rate-limited (0: an eighth of --max-conns)")
	f.maxUnsentBytes = server.DefaultMaxUnsentBytes
	fs.Var(bytesFlag{&f.maxUnsentBytes}, "max-unsent-bytes", "most `bytes` of list answers (pages of services, configuration values or events)\nbuilt and not yet taken by their clients, in all, and an eighth of it of one\ntenant; past it a list read is refused at once, rate-limited (a client that\ndoes not read holds its answer until the 60s write timeout)")
	fs.IntVar(&f.conns.maxConns, "max-conns", 0, "client connections held before a new one closes another: one waiting on its\nclient (a slow request, an answer not taken) for 5 s, else the longest-idle\none, else one waiting on its client for 1 s, else one whose request is still\narriving; if none, the new one is let in over it (0: the descriptor limit\nless a tenth, at least 64, kept in reserve)")
	fs.IntVar(&f.conns.maxIdle, "max-idle-conns", 0, "most keep-alive connections idle at once (0: half of --max-conns)")
	fs.IntVar(&f.conns.maxIdlePerTenant, "max-idle-conns-per-tenant", 0, "most idle keep-alive connections of one tenant (0: --max-waiters)")
	fs.DurationVar(&f.conns.unauthIdleTimeout, "unauth-idle-timeout", 10*time.Second, "how long a keep-alive connection may stay idle before it authenticates")
	fs.IntVar(&f.serviceLimit, "service-limit", store.DefaultLimits.Services, "services a new account may hold")
	fs.IntVar(&f.configLimit, "config-limit", store.DefaultLimits.ConfigValues, "configuration values a new account may hold")
	fs.IntVar(&f.rateLimit, "rate-limit", 500000, "GET requests a tenant may make per day")
	fs.IntVar(&f.login.FailuresPerAddress, "login-failures-per-address", server.DefaultAuthLimits.FailuresPerAddress, "failed token requests a client address (IPv6: its /64) may make per minute\nbefore its token requests are refused (429); -1 for no limit")
	fs.IntVar(&f.login.FailuresPerUser, "login-failures-per-user", server.DefaultAuthLimits.FailuresPerUser, "failed password logins per minute that may name one username before\nits password logins are refused (429) without a check (API-key logins\nare not); -1 for no limit")
	fs.IntVar(&f.login.IssuesPerUser, "token-issues-per-user", server.DefaultAuthLimits.IssuesPerUser, "tokens one user may be issued per hour (each is stored until it expires); past it,\na login gets the last valid token issued to the user for that credential again,\nelse 429; -1 for no limit")
	fs.IntVar(&f.login.BcryptConcurrency, "bcrypt-concurrency", server.DefaultAuthLimits.BcryptConcurrency, "password checks (bcrypt) that may run at once, by default half the CPUs;\nmore wait, up to 64, for at most 5s, then get 503")
	fs.Float64Var(&f.writeRate, "write-rate", server.DefaultWriteRate, "writes (service creates, updates, deletes; configuration sets, deletes) a tenant\nmay make per second after a burst of --write-burst, at this node and, on the etcd\nstore, through all nodes together; heartbeats do not count, but on the etcd store\nthose that move a service from another node have a budget of their own: this\nrate or one a second for every 3 live services, after a burst of --write-burst or\nthe live services, whichever is more; 0: no limit")
	fs.IntVar(&f.writeBurst, "write-burst", server.DefaultWriteBurst, "writes a tenant may make at once")
	fs.IntVar(&f.maxEvents, "max-events", store.DefaultMaxEvents, "most events a tenant keeps; past it the oldest are deleted; 0: no limit\nbut --retention")
	f.maxEventBytes = store.DefaultMaxEventBytes
	fs.Var(bytesFlag{&f.maxEventBytes}, "max-event-bytes", "most `bytes` of events a tenant keeps; past it the oldest are deleted; 0: no\nlimit")
	fs.BoolVar(&f.ui, "ui", true, "serve the dashboard at /ui/ (sign-in with the same accounts as the API;\n--ui=false to turn it off)")
	fs.BoolVar(&f.hashPassword, "hash-password", false, "read a password on stdin, print its bcrypt hash for --users, and exit")
	fs.BoolVar(&f.db.check, "check", false, "check the database under --data-dir from end to end, and exit (the server must be stopped)")
	fs.BoolVar(&f.db.compact, "compact", false, "rewrite the database under --data-dir without its free pages, and exit\n(the server must be stopped)")
	fs.StringVar(&f.db.backup, "backup", "", "write a consistent copy of the database under --data-dir to `file`, and exit;\nworks while the server runs")
	fs.StringVar(&f.db.restore, "restore", "", "make the backup `file` the database under --data-dir, and exit\n(the server must be stopped; the database replaced is kept beside it)")
	fs.StringVar(&f.etcd.endpoints, "etcd-endpoints", "", "comma-separated etcd client `URLs`; keeps state in etcd instead of --data-dir,\nshared by every server given the same endpoints and --etcd-prefix; replaced once a minute\nby the client URLs the members advertise")
	fs.StringVar(&f.etcd.prefix, "etcd-prefix", etcdstore.DefaultPrefix, "`prefix` of every etcd key the server uses")
	fs.StringVar(&f.etcd.cert, "etcd-cert", "", "client certificate `file` (PEM) for etcd, with --etcd-key")
	fs.StringVar(&f.etcd.key, "etcd-key", "", "client private key `file` (PEM) for etcd")
	fs.StringVar(&f.etcd.cacert, "etcd-cacert", "", "CA certificate `file` (PEM) that signed the etcd members' certificates")
	fs.StringVar(&f.etcd.username, "etcd-username", "", "etcd `user`, with --etcd-password")
	fs.StringVar(&f.etcd.password, "etcd-password", "", "etcd user's `password`; or the environment's SVCREG_ETCD_PASSWORD, which\nunlike a flag other local users cannot read (ps, /proc)")
	fs.StringVar(&f.etcd.peerListen, "etcd-peer-listen", defaultPeerListen, "`address` (host:port; port 0 picks a free one) on which this node takes the other\nnodes' copies of the heartbeats they answer from memory, so that a service\nwhose client and holding node both die still times out within a second of\nits deadline. Nodes on other machines must reach it: give an address on\ntheir network (and --etcd-peer-advertise if they reach it by another).\n\"off\" turns copies off: such a service then times out up to\n--etcd-heartbeat-slack late")
	fs.StringVar(&f.etcd.peerAdvertise, "etcd-peer-advertise", "", "`host:port` at which the other nodes reach --etcd-peer-listen (default its own\naddress)")
	fs.DurationVar(&f.etcd.heartbeatSlack, "etcd-heartbeat-slack", 0, "how far past a heartbeat's deadline a node stores it in etcd; the node answers\nthe service's next heartbeats from memory while their deadlines fall within it\n(without a peer's copy, within it less the least slack below). It bounds how\nlate a service is timed out whose client and holding node both died; smaller\ncosts more etcd writes. From --etcd-node-ttl plus twice --etcd-request-timeout\n(15s with their defaults) to 24h (default twice the service's timeout, at\nleast 1m, and never below that)")
	fs.DurationVar(&f.etcd.heartbeatLinger, "etcd-heartbeat-linger", etcdstore.DefaultHeartbeatLinger, "how long a heartbeat that must be written to etcd (a first at a node, one past\nits stored deadline, one that moved) waits for others to share its etcd\ncommit; a commit is a raft round with a disk sync on a quorum. 0 commits at\nonce; at most 1s")
	fs.DurationVar(&f.etcd.nodeTTL, "etcd-node-ttl", etcdstore.DefaultNodeTTL, "lease of this node's key in etcd, whole seconds from 2s to 30s: how long the\nother nodes take to count this node dead once it is (they then go on from what\nit held: without a live peer node, a heartbeat of a service it held waits for\nthat), and how long it may be cut off from etcd, or starved of CPU, without\ncounting as dead. Longer rides out longer pauses; shorter fails over sooner.\nGive every node the same value")
	fs.DurationVar(&f.etcd.requestTimeout, "etcd-request-timeout", etcdstore.DefaultRequestTimeout, "how long each etcd call may take before the request it serves fails with 503,\n1s to "+maxEtcdRequestTimeout.String()+"; a read, heartbeat or write with no answer within a tenth of it\nis sent again to another etcd member, and a watch whose member leaves a probe\nunanswered for a fifth of it moves to another. Give every node the same value")
	fs.DurationVar(&f.etcd.copyLinger, "etcd-copy-linger", etcdstore.DefaultCopyLinger, "how long a heartbeat's copy to the peer node waits for others (up to 16) to\nshare its round trip, when none is on its way; the heartbeat waits for it.\n0 sends at once; at most 100ms")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.hashPassword {
		var others []string
		fs.Visit(func(fl *flag.Flag) {
			if fl.Name != "hash-password" {
				others = append(others, "--"+fl.Name)
			}
		})
		if len(others) > 0 {
			return usagef("--hash-password prints a hash and exits: %s would do nothing with it; leave it out", strings.Join(others, ", "))
		}
		return printPasswordHash(stdin, stdout)
	}
	if f.db.any() {
		if f.etcd.endpoints != "" {
			return usagef("--check, --compact, --backup and --restore are for the embedded store; for etcd see \"Backups\" in docs/etcd.md")
		}
		return runDBCommand(f.db, f.dataDir, stdout)
	}
	// The server: it lives on when its log's reader goes away.
	supervise.SurviveClosedOutput()
	if !f.dev && f.users == "" {
		return usagef("give --users FILE, or --dev to let anyone in with API key \"dev\"")
	}
	if f.dev && f.users != "" {
		return usagef("--dev lets anyone in and excludes --users: a --dev user could take a tenant of the users file")
	}
	if f.login.BcryptConcurrency < 1 {
		return usagef("--bcrypt-concurrency must be at least 1")
	}
	for _, l := range []struct {
		name string
		n    int
	}{
		{"--login-failures-per-address", f.login.FailuresPerAddress},
		{"--login-failures-per-user", f.login.FailuresPerUser},
		{"--token-issues-per-user", f.login.IssuesPerUser},
	} {
		if l.n == 0 || l.n < -1 {
			return usagef("%s %d: want at least 1, or -1 for no limit", l.name, l.n)
		}
	}
	if f.rateLimit < 1 {
		return usagef("--rate-limit %d: want at least 1 GET request a day", f.rateLimit)
	}
	if f.retention < time.Minute {
		return usagef("--retention %v: want at least 1m (events older than it are deleted)", f.retention)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if f.serviceLimit < 1 || f.configLimit < 1 {
		return usagef("--service-limit and --config-limit must be at least 1")
	}
	if f.reapInterval < 0 {
		return usagef("--reap-interval must not be negative")
	}
	if f.tokenTTL < time.Second || f.tokenTTL > server.MaxTokenTTL {
		return usagef("--token-ttl %v: want 1s to %v", f.tokenTTL, server.MaxTokenTTL)
	}
	if f.writeRate < 0 || math.IsNaN(f.writeRate) || math.IsInf(f.writeRate, 0) || f.writeBurst < 1 || f.maxEvents < 0 || f.maxEventBytes < 0 {
		return usagef("--write-rate (a number), --max-events and --max-event-bytes must not be negative, --write-burst at least 1")
	}
	if f.maxEventBytes == 0 {
		f.maxEventBytes = -1
	}
	if f.writeRate == 0 {
		f.writeRate = -1
	}
	if f.maxEvents == 0 {
		f.maxEvents = -1
	}
	if f.maxUnsentBytes < 1 {
		return usagef("--max-unsent-bytes must be positive")
	}
	if f.maxWaiters < 0 || f.maxListReadsWaiting < 0 || f.conns.maxWaiters < 0 || f.conns.maxConns < 0 || f.conns.maxIdle < 0 || f.conns.maxIdlePerTenant < 0 {
		return usagef("--max-waiters, --max-waiters-total, --max-list-reads-waiting, --max-conns, --max-idle-conns and --max-idle-conns-per-tenant must not be negative")
	}
	if f.conns.unauthIdleTimeout <= 0 {
		return usagef("--unauth-idle-timeout %v: want a positive duration", f.conns.unauthIdleTimeout)
	}
	// The store's own bounds, checked before anything starts, as a usage
	// error.
	if d := f.etcd.nodeTTL; d < 2*time.Second || d > etcdstore.MaxNodeTTL || d%time.Second != 0 {
		return usagef("--etcd-node-ttl %v: want whole seconds from 2s to %v", d, etcdstore.MaxNodeTTL)
	}
	if d := f.etcd.requestTimeout; d < time.Second || d > maxEtcdRequestTimeout {
		return usagef("--etcd-request-timeout %v: want 1s to %v", d, maxEtcdRequestTimeout)
	}
	slackOpts := etcdstore.Options{HeartbeatSlack: f.etcd.heartbeatSlack, NodeTTL: f.etcd.nodeTTL, RequestTimeout: f.etcd.requestTimeout}
	if err := etcdstore.CheckHeartbeatSlack(slackOpts); err != nil {
		return usagef("--etcd-heartbeat-slack: %v (0 is the default: twice the timeout, at least 1m and at least --etcd-node-ttl plus twice --etcd-request-timeout)", err)
	}
	if f.etcd.heartbeatLinger < 0 || f.etcd.heartbeatLinger > time.Second {
		return usagef("--etcd-heartbeat-linger %v: want 0 (commit at once) to 1s", f.etcd.heartbeatLinger)
	}
	if f.etcd.copyLinger < 0 || f.etcd.copyLinger > 100*time.Millisecond {
		return usagef("--etcd-copy-linger %v: want 0 (send at once) to 100ms", f.etcd.copyLinger)
	}
	if f.etcd.peerListen != "off" {
		if _, port, err := net.SplitHostPort(f.etcd.peerListen); err != nil || port == "" {
			return usagef("--etcd-peer-listen %q: want host:port (port 0 picks a free one), or off", f.etcd.peerListen)
		}
	}
	if a := f.etcd.peerAdvertise; a != "" {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" || port == "0" {
			return usagef("--etcd-peer-advertise %q: want the host:port other nodes reach this one at", a)
		}
		if f.etcd.peerListen == "off" {
			return usagef("--etcd-peer-advertise needs --etcd-peer-listen")
		}
	}
	if f.etcd.endpoints == "" && (f.etcd.cert != "" || f.etcd.key != "" || f.etcd.cacert != "" || f.etcd.username != "" || f.etcd.password != "" || f.etcd.heartbeatSlack != 0 ||
		f.etcd.peerListen != defaultPeerListen || f.etcd.peerAdvertise != "" ||
		f.etcd.heartbeatLinger != etcdstore.DefaultHeartbeatLinger || f.etcd.copyLinger != etcdstore.DefaultCopyLinger ||
		f.etcd.nodeTTL != etcdstore.DefaultNodeTTL || f.etcd.requestTimeout != etcdstore.DefaultRequestTimeout) {
		return usagef("the --etcd-* flags need --etcd-endpoints")
	}
	if (f.etcd.cert == "") != (f.etcd.key == "") {
		return usagef("--etcd-cert and --etcd-key go together")
	}
	for ep := range strings.SplitSeq(f.etcd.endpoints, ",") {
		// etcd's client takes no credentials from a URL, and a URL is
		// logged and shown by ps: say where they go instead.
		ep = strings.TrimSpace(ep)
		if !strings.Contains(ep, "://") {
			ep = "//" + ep // etcd takes host:port alone too
		}
		if u, err := url.Parse(ep); err == nil && u.User != nil {
			return usagef("--etcd-endpoints: give etcd's credentials with --etcd-username and " + etcdPasswordEnv + ", not in the URL (user:password@host)")
		}
	}
	if f.etcd.username != "" && f.etcd.password == "" {
		f.etcd.password = os.Getenv(etcdPasswordEnv)
	}
	if (f.etcd.username == "") != (f.etcd.password == "") {
		return usagef("--etcd-username and --etcd-password (or " + etcdPasswordEnv + ") go together")
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	var users []server.User
	if f.users != "" {
		if users, err = server.LoadUsers(f.users); err != nil {
			return err
		}
	}
	warnReadableSecrets(log, f)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reap := f.reapInterval
	if reap == 0 {
		reap = -1
	}
	if f.readyFile != "" {
		// A file an earlier run left must not pass for this run's.
		if err := os.Remove(f.readyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("--ready-file: %w", err)
		}
	}
	// The addresses are checked, and the certificate loaded, before the
	// store opens: opening records the auth mode (authMode), and a start
	// that fails on --listen or --tls-cert must not leave a registry marked
	// as served with --dev (or --users) when it never was. They are
	// listened on once the store is open: a node that is starting refuses
	// connections, so that clients move to another at once, rather than
	// wait in its backlog while its store opens; a trial listen, closed at
	// once, finds a bad address or a port in use.
	if err := tryListen(f.listen, f.metricsListen); err != nil {
		return err
	}
	var cert *server.Certificate
	if f.tlsCert != "" {
		if cert, err = server.LoadCertificate(f.tlsCert, f.tlsKey); err != nil {
			return fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
	}
	limits := store.Limits{Services: f.serviceLimit, ConfigValues: f.configLimit}
	st, closeStore, err := openStore(ctx, f, log, reg, limits, reap)
	var refused *store.AuthModeError
	if errors.As(err, &refused) {
		return authModeRefusal(f, refused.Recorded)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := closeStore(); err != nil {
			log.Error("close store", "err", err)
		}
	}()
	auth := server.NewAuth(server.AuthConfig{Store: st, Users: users, Dev: f.dev, TokenTTL: f.tokenTTL, Limits: f.login, Logger: log, Registerer: reg})
	if err := auth.LoadRevocations(ctx); err != nil {
		return err
	}
	metrics := metricsHandler(reg)
	apiMetrics := metrics
	if f.metricsListen != "" {
		apiMetrics = nil // /metrics on --listen is 404
	}
	cfg := server.ConnLimits(server.Config{
		Store:                        st,
		Auth:                         auth,
		Logger:                       log,
		Registerer:                   reg,
		Metrics:                      apiMetrics,
		UI:                           uiHandler(f.ui),
		MaxWaitersPerTenant:          f.maxWaiters,
		MaxListReadsWaitingPerTenant: f.maxListReadsWaiting,
		MaxUnsentBytes:               f.maxUnsentBytes,
		MaxWaiters:                   f.conns.maxWaiters,
		MaxConns:                     f.conns.maxConns,
		MaxIdleConns:                 f.conns.maxIdle,
		MaxIdleConnsPerTenant:        f.conns.maxIdlePerTenant,
		UnauthIdleTimeout:            f.conns.unauthIdleTimeout,
		RateLimit:                    f.rateLimit,
		WriteRate:                    f.writeRate,
		WriteBurst:                   f.writeBurst,
	}, server.DescriptorLimit())
	api := server.New(cfg)
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	defer ln.Close() // if the server does not start; Serve closes it too
	var metricsLn net.Listener
	if f.metricsListen != "" {
		if metricsLn, err = net.Listen("tcp", f.metricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", f.metricsListen, err)
		}
		defer metricsLn.Close()
	}
	scheme := "http"
	if cert != nil {
		// HTTP/1.1 only: clients keep one persistent connection, and parked
		// long-polls hand theirs back to the server.
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: cert.GetCertificate, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	httpServer := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second, // long-polls extend their own
		IdleTimeout:       5 * time.Minute,  // above the longest heartbeat interval
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          logging.ErrorLog(log.Handler()),
	}
	if f.dev {
		// Its dev account's credentials are known to every web page: one
		// the operator's browser opens could log in through a DNS name it
		// points at the server (DNS rebinding) and read and write the
		// registry. A proxy in front of a dev server names it by address.
		httpServer.Handler = statuspage.AddressedOnly(api)
	}
	base := scheme + "://" + ln.Addr().String()
	where := []any{"data_dir", f.dataDir}
	if f.etcd.endpoints != "" {
		where = []any{"etcd", f.etcd.endpoints, "etcd_prefix", f.etcd.prefix}
		if n, ok := st.(interface{ Node() (string, string) }); ok {
			id, peer := n.Node()
			where = append(where, "node", id, "peer_listen", peer)
		}
	}
	// SIGINT and SIGTERM are caught from here on: a stop right after the
	// "listening" line is still graceful.
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	log.Info("svcreg server listening", append(append([]any{"url", base}, where...), "dev", f.dev, "users", len(users), "ui", f.ui, "version", versionString())...)
	if f.readyFile != "" {
		if err := writeReadyFile(f.readyFile, base); err != nil {
			return err // the deferred close releases the listener
		}
		defer os.Remove(f.readyFile)
	}
	log.Info("connection limits", "descriptors", server.DescriptorLimit(), "max_conns", cfg.MaxConns,
		"max_waiters_total", cfg.MaxWaiters, "max_waiters", cfg.MaxWaitersPerTenant, "max_list_reads_waiting", cfg.MaxListReadsWaitingPerTenant,
		"max_idle_conns", cfg.MaxIdleConns, "max_idle_conns_per_tenant", cfg.MaxIdleConnsPerTenant,
		"unauth_idle_timeout", cfg.UnauthIdleTimeout)
	if f.dev {
		log.Warn("--dev: ANY username authenticates with API key \"dev\"; anyone who can reach " + base + " can read and write the registry. Use --users for anything but development.")
		printDevHelp(stdout, base)
	}
	reload := func() {
		if err := reloadServer(f, auth, cert, log); err != nil {
			log.Error("SIGHUP: kept the users and TLS certificate in use", "err", err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g run.Group
	g.Add(func() error { return st.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return auth.Run(ctx) }, func(error) { cancel() })
	addHTTPServer(&g, log, httpServer, func() error { return api.Serve(httpServer, ln) }, api.Drain, 15*time.Second)
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		var h http.Handler = mux
		if f.dev {
			h = statuspage.AddressedOnly(mux) // as the API's
		}
		log.Info("metrics listening", "url", "http://"+metricsLn.Addr().String()+"/metrics", "max_conns", metricsConns)
		// A scraper needs a connection or two (addBoundedServer), and
		// they hold none of the descriptors kept in reserve.
		addBoundedServer(&g, log, metricsLn, h, metricsConns)
	}
	g.Add(func() error { return stopOrReload(ctx, log, sigs, reload) }, func(error) { cancel() })
	if err := g.Run(); !errors.Is(err, errStopped) {
		return err
	}
	return nil
}

// authMode is the auth mode the flags serve the registry in. Each store
// records it the first time the registry is served and refuses to open in
// the other after that (its Options.AuthMode): --dev on a registry served
// with --users (in this data directory, or by any node of the etcd prefix)
// would let anyone in as a user of its tenants ("dev" is tenant 7777, and
// other names take tenants by a hash), and --users on one served with
// --dev would give its users what anyone wrote.
func authMode(f serverFlags) string {
	if f.dev {
		return store.AuthDev
	}
	return store.AuthUsers
}

// authModeRefusal says why a registry served in the mode recorded is not
// served in the flags' (usage error, exit 2).
func authModeRefusal(f serverFlags, recorded string) error {
	flag, where := "--data-dir", fmt.Sprintf("--data-dir %q", f.dataDir)
	if f.etcd.endpoints != "" {
		flag, where = "--etcd-prefix", fmt.Sprintf("--etcd-prefix %q", f.etcd.prefix)
	}
	switch recorded {
	case store.AuthUsers:
		return usagef("%s was served with --users: --dev would let anyone in as a user of its tenants. Serve it with --users, or give --dev a %s of its own", where, flag)
	case store.AuthDev:
		return usagef("%s was served with --dev, which let anyone in: its tenants hold what anyone wrote. Serve it with --dev, or give --users a %s of its own", where, flag)
	}
	// Neither (damaged, or of another program): say what it holds.
	return usagef("%s records the auth mode %q, which is neither --dev nor --users: give this server a %s of its own", where, recorded, flag)
}

// metricsConns is how many connections --metrics-listen serves at once.
const metricsConns = 16

// reloadServer reads --users and --tls-cert/--tls-key again and, only if
// all are valid, switches to them.
func reloadServer(f serverFlags, auth *server.Auth, cert *server.Certificate, log *slog.Logger) error {
	var users []server.User
	var err error
	if f.users != "" {
		if users, err = server.LoadUsers(f.users); err != nil {
			return err
		}
	}
	var newCert *tls.Certificate
	if cert != nil {
		if newCert, err = cert.Read(); err != nil {
			return err
		}
	}
	attrs := []any{"users", len(users)}
	if cert != nil {
		cert.Set(newCert)
		attrs = append(attrs, "tls_cert", f.tlsCert, "tls_not_after", cert.NotAfter())
	}
	if f.users != "" {
		if err := auth.SetUsers(users); err != nil {
			return err
		}
	}
	if f.users == "" && cert == nil {
		log.Info("SIGHUP: nothing to read again (no --users, no --tls-cert)")
		return nil
	}
	warnReadableSecrets(log, f) // before: a reader of the log that sees the line below has seen it
	log.Info("SIGHUP: read the users file and TLS certificate again", attrs...)
	return nil
}

// warnReadableSecrets warns of the users file and the TLS key when every
// local user can read them: they hold API keys, static tokens and the
// server's private key. A file in a directory others cannot search is
// not.
func warnReadableSecrets(log *slog.Logger, f serverFlags) {
	for _, s := range []struct{ flag, path string }{{"--users", f.users}, {"--tls-key", f.tlsKey}} {
		if s.path != "" {
			warnReadableSecret(log, s.flag, s.path, "it holds secrets: make it readable by the server's user or group only (chmod o-r; see the README's Running the registry server)")
		}
	}
}

// warnReadableSecret warns that the file path (of flag), which holds a
// secret, can be read by every local user, saying what to do (fix).
func warnReadableSecret(log *slog.Logger, flag, path, fix string) {
	if runtime.GOOS == "windows" {
		return // no such mode bits
	}
	if mode, ok := readableByOthers(path); ok {
		log.Warn(flag+" file can be read by every local user, and "+fix, "file", path, "mode", fmt.Sprintf("%04o", mode))
	}
}

// readableByOthers reports whether a user that is neither path's owner
// nor in its group can read it: the file readable by others, and every
// directory above it searchable by them. It gives the file's mode. The
// directories are those of the file's own path, links resolved: others
// read it there, whatever a link to it is in.
func readableByOthers(path string) (os.FileMode, bool) {
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return 0, false
	}
	fi, err := os.Stat(abs)
	if err != nil || fi.Mode().Perm()&0o004 == 0 || !fsperm.DirsSearchable(filepath.Dir(abs)) {
		return 0, false
	}
	return fi.Mode().Perm(), true
}

// serverStore is what the server keeps its state in.
type serverStore interface {
	store.Store
	store.Identity
}

// openStore opens the embedded store under --data-dir, or the etcd store
// with --etcd-endpoints. The returned func closes the store (and the etcd
// client).
func openStore(ctx context.Context, f serverFlags, log *slog.Logger, reg prometheus.Registerer, limits store.Limits, reap time.Duration) (serverStore, func() error, error) {
	if f.etcd.endpoints == "" {
		if _, err := checkInChild(f.dataDir, dbCheckTimeout); err != nil {
			return nil, nil, err
		}
		st, err := boltstore.Open(f.dataDir, boltstore.Options{
			Logger:        log,
			Registerer:    reg,
			DefaultLimits: limits,
			Retention:     f.retention,
			AuthMode:      authMode(f),
			MaxEvents:     f.maxEvents,
			MaxEventBytes: f.maxEventBytes,
			ReapInterval:  reap,
			BackupSocket:  filepath.Join(f.dataDir, boltstore.SocketName),
		})
		if err != nil {
			return nil, nil, explainStoreError(err)
		}
		return st, st.Close, nil
	}
	var endpoints []string
	for ep := range strings.SplitSeq(f.etcd.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			endpoints = append(endpoints, ep)
		}
	}
	cli, err := etcdstore.NewClient(etcdstore.ClientConfig{
		Endpoints: endpoints,
		CertFile:  f.etcd.cert,
		KeyFile:   f.etcd.key,
		CAFile:    f.etcd.cacert,
		Username:  f.etcd.username,
		Password:  f.etcd.password,
	})
	if err != nil {
		return nil, nil, err
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	peerListen := f.etcd.peerListen
	if peerListen == "off" {
		peerListen = ""
	}
	st, err := etcdstore.Open(octx, cli, etcdstore.Options{
		Prefix:         f.etcd.prefix,
		AuthMode:       authMode(f),
		Logger:         log,
		Registerer:     reg,
		DefaultLimits:  limits,
		Retention:      f.retention,
		MaxEvents:      f.maxEvents,
		MaxEventBytes:  f.maxEventBytes,
		ReapInterval:   reap,
		HeartbeatSlack: f.etcd.heartbeatSlack,
		MoveRate:       f.writeRate, // -1 for --write-rate 0, as for the server
		MoveBurst:      f.writeBurst,
		WriteRate:      f.writeRate, // shared by the nodes
		WriteBurst:     f.writeBurst,
		NodeTTL:        f.etcd.nodeTTL,
		RequestTimeout: f.etcd.requestTimeout,
		PeerListen:     peerListen,
		PeerAdvertise:  f.etcd.peerAdvertise,
		// 0 on the command line is at once; in Options, the default.
		HeartbeatLinger: lingerOption(f.etcd.heartbeatLinger),
		CopyLinger:      lingerOption(f.etcd.copyLinger),
	})
	if err != nil {
		cli.Close()
		switch {
		case errors.Is(err, rpctypes.ErrPermissionDenied):
			// etcd answered: probing the endpoints would tell nothing.
			return nil, nil, fmt.Errorf("open the etcd store: %w (the etcd user %q needs read-write on the prefix %s)", err, f.etcd.username, f.etcd.prefix)
		case errors.Is(err, rpctypes.ErrNoSpace):
			return nil, nil, fmt.Errorf("open the etcd store: %w", err) // the store says what to do
		case errors.Is(err, store.ErrUnavailable):
			return nil, nil, fmt.Errorf("open the etcd store: %w; %s", err, reachEtcd(endpoints))
		}
		return nil, nil, fmt.Errorf("open the etcd store: %w", err)
	}
	return st, func() error {
		err := st.Close()
		return errors.Join(err, cli.Close())
	}, nil
}

// printDevHelp prints how to reach a --dev server. Its exports leave the
// identity endpoint to follow SVCREG_URL: an SVCREG_AUTH_URL would pin
// logins to this node when SVCREG_URL later lists every node's.
func printDevHelp(w io.Writer, base string) {
	fmt.Fprintf(w, `svcreg server is running in --dev mode at %[1]s
Any username authenticates with the API key "dev"; user "dev" has tenant 7777.

  export SVCREG_URL=%[1]s/v1.0 SVCREG_USERNAME=dev SVCREG_API_KEY=dev

  curl -s %[1]s/v2.0/tokens -H 'Content-Type: application/json' \
    -d '{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"dev","apiKey":"dev"}}}'
  curl -s %[1]s/v1.0/7777/services -H "X-Auth-Token: <access.token.id from above>"

`, base)
}

func printPasswordHash(stdin io.Reader, stdout io.Writer) error {
	data, err := io.ReadAll(io.LimitReader(stdin, 1024))
	if err != nil {
		return err
	}
	pw := string(data)
	for len(pw) > 0 && (pw[len(pw)-1] == '\n' || pw[len(pw)-1] == '\r') {
		pw = pw[:len(pw)-1]
	}
	if pw == "" {
		return usagef("--hash-password: write the password on stdin")
	}
	h, err := server.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}

// uiHandler is the dashboard's handler, or nil when it is turned off.
func uiHandler(on bool) http.Handler {
	if !on {
		return nil
	}
	return ui.Handler("/ui")
}

// writeReadyFile writes url and a newline to path, atomically (a temporary
// file renamed into place): whoever waits for path reads the whole URL.
func writeReadyFile(path, url string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(url + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("--ready-file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	return nil
}

// lingerOption is a linger flag's value as the etcd store's option: the
// flag's 0 (at once) is the option's negative; the option's 0 would be
// its default.
func lingerOption(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// etcdPasswordEnv holds the etcd user's password when --etcd-password does
// not: a flag is in the command line, which every local user can read.
const etcdPasswordEnv = "SVCREG_ETCD_PASSWORD"

// reachEtcd says, for an etcd that did not answer, whether each endpoint
// takes a TCP connection at all: "connection refused" points at the
// address or a stopped member, a connection taken at TLS, credentials or
// the quorum.
func reachEtcd(endpoints []string) string {
	results := make([]string, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() {
			network, addr := etcdAddr(ep)
			c, err := net.DialTimeout(network, addr, time.Second)
			if err != nil {
				results[i] = fmt.Sprintf("%s: %v", ep, err)
				return
			}
			c.Close()
			results[i] = ep + " takes connections (check TLS, --etcd-username and that a quorum of members runs)"
		})
	}
	wg.Wait()
	return "no answer from etcd: " + strings.Join(results, "; ")
}

// etcdAddr is where the etcd client connects for an endpoint: a Unix
// socket's path for unix://PATH and unixs://PATH (unix:///abs, or a
// relative path after the "//"), the host and port of an http(s) URL, or
// the endpoint itself (host:port).
func etcdAddr(ep string) (network, addr string) {
	for _, scheme := range []string{"unix:", "unixs:"} {
		if rest, ok := strings.CutPrefix(ep, scheme); ok {
			return "unix", strings.TrimPrefix(rest, "//")
		}
	}
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		return "tcp", u.Host
	}
	return "tcp", ep
}

// tryListen listens on --listen and --metrics-listen (if not empty), both
// at once (the same port given twice fails), and closes the listeners:
// whether the server could listen there.
func tryListen(listen, metricsListen string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	defer ln.Close()
	if metricsListen != "" {
		mln, err := net.Listen("tcp", metricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", metricsListen, err)
		}
		mln.Close()
	}
	return nil
}

// bytesFlag is a flag of a size in bytes: a whole number, or one with
// KiB, MiB or GiB ("32MiB").
type bytesFlag struct{ p *int64 }

func (b bytesFlag) String() string {
	if b.p == nil {
		return "0"
	}
	n := *b.p
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b bytesFlag) Set(s string) error {
	if s == "0" {
		*b.p = 0
		return nil
	}
	var size render.ByteSize
	if err := size.UnmarshalTOML(s); err != nil {
		return errors.New("give a size such as 65536, 512KiB, 32MiB or 1GiB")
	}
	*b.p = int64(size)
	return nil
}
