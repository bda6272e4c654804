// Command etcdmember runs one etcd member for package etcdtest, in a
// process of its own: etcd's server then runs as it does in production, a
// program beside svcreg, and a test binary built with -race does not pay
// the race detector's cost for etcd's raft, storage and gRPC server (about
// six times the CPU of an uninstrumented member).
//
// It writes "ready" on stdout once the member serves. SIGTERM stops the
// member as etcd stops (a leader hands its leadership over first) and the
// process exits 0; so does the end of stdin, so that a test binary that dies
// leaves no member behind. A failure to start is written on stderr, with
// exit status 1.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := embed.NewConfig()
	var listenClient, advertiseClient, peer string
	var existing, fsync bool
	var maxTxnOps uint
	var compactRevisions int
	flag.StringVar(&cfg.Name, "name", "", "member name")
	flag.StringVar(&cfg.Dir, "data-dir", "", "data directory")
	flag.StringVar(&listenClient, "listen-client-url", "", "client URL to listen on")
	flag.StringVar(&advertiseClient, "advertise-client-url", "", "client URL to advertise")
	flag.StringVar(&peer, "peer-url", "", "peer URL to listen on and advertise")
	flag.StringVar(&cfg.InitialCluster, "initial-cluster", "", "name=peer-url,… of every member")
	flag.BoolVar(&existing, "existing", false, "join the existing cluster (a restart) instead of bootstrapping it")
	flag.BoolVar(&fsync, "fsync", false, "sync the log as etcd does in production")
	flag.UintVar(&maxTxnOps, "max-txn-ops", 0, "etcd's --max-txn-ops; its default if 0")
	flag.IntVar(&compactRevisions, "auto-compaction-revisions", 0, "keep about this many revisions (0: no auto-compaction)")
	flag.Int64Var(&cfg.QuotaBackendBytes, "quota-backend-bytes", 0, "etcd's --quota-backend-bytes; its default if 0")
	flag.UintVar(&cfg.TickMs, "tick-ms", cfg.TickMs, "raft heartbeat interval")
	flag.UintVar(&cfg.ElectionMs, "election-ms", cfg.ElectionMs, "raft election timeout")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	urls := func(s string) ([]url.URL, error) {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("bad URL %q", s)
		}
		return []url.URL{*u}, nil
	}
	var err error
	if cfg.ListenClientUrls, err = urls(listenClient); err != nil {
		return err
	}
	if cfg.AdvertiseClientUrls, err = urls(advertiseClient); err != nil {
		return err
	}
	if cfg.ListenPeerUrls, err = urls(peer); err != nil {
		return err
	}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.InitialClusterToken = "etcdtest"
	if existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = !fsync
	if maxTxnOps != 0 {
		cfg.MaxTxnOps = maxTxnOps
	}
	if compactRevisions > 0 {
		cfg.AutoCompactionMode = embed.CompactorModeRevision
		cfg.AutoCompactionRetention = fmt.Sprint(compactRevisions)
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return fmt.Errorf("member %s did not become ready", cfg.Name)
	}
	fmt.Println("ready")

	stdinClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-term:
	case <-stdinClosed:
	case err := <-e.Err():
		return err
	}
	return nil
}
