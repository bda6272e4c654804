package etcdstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ClientConfig says how to reach the etcd cluster (the server's --etcd-*
// flags).
type ClientConfig struct {
	// Endpoints are the members' client URLs, e.g. https://10.0.0.1:2379.
	Endpoints []string
	// CertFile and KeyFile are a client certificate (PEM) for clusters
	// that authenticate clients by certificate; CAFile verifies the
	// members' certificates. Any of them turns TLS on.
	CertFile, KeyFile, CAFile string
	// Username and Password authenticate with etcd's own users.
	Username, Password string
	// DialTimeout bounds connecting at start; 5s if zero.
	DialTimeout time.Duration
}

// NewClient connects to etcd. The store logs what matters, so the client's
// own logs are dropped. It reconnects within two seconds of etcd coming
// back.
func NewClient(cfg ClientConfig) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("an etcd client certificate needs both its certificate and its key file")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	var tlsConfig *tls.Config
	if cfg.CertFile != "" || cfg.CAFile != "" {
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		var err error
		if tlsConfig, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         tlsConfig,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DialTimeout: cfg.DialTimeout,
		// No AutoSyncInterval: the store keeps the endpoints in step with
		// etcd's membership itself (syncEndpoints), in step with its
		// connections to single members.

		// A member that stops answering without closing its connections
		// (a host powered off, a partition that drops packets) would
		// otherwise hold every request the client sends it, about one in
		// as many as there are members, until the request times out, for
		// as long as it is gone: with pings, a connection silent for 10 s
		// (gRPC's least) while a request waits on it is closed 3 s later,
		// and the requests go to the other members.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               zap.NewNop(),
		// gRPC backs off reconnecting for up to two minutes by default;
		// a registry should be back within seconds of etcd.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return cli, nil
}
