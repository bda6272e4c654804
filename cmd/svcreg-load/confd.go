package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The render benchmark's other renderer: confd 0.16 with its etcdv3
// backend, watching an etcd (a child process on loopback ports) that holds
// one key per service, etcdKey(id), whose value is the service's metadata
// as a JSON object.

const etcdPrefix = "/svcreg-load"

// confdTemplate renders from etcd the lines renderTemplate renders from
// the registry; confd's keys are relative to the resource's prefix.
const confdTemplate = `{{ range gets "/services/*" }}{{ $s := json .Value }}server {{ base .Key }} {{ $s.ip }}:{{ $s.port }} weight={{ $s.weight }}
{{ end }}`

// confdResource is confd's template resource: what to watch and where to
// install; without a reload command, as svcreg's renderer runs none.
const confdResource = `[template]
src = "lines.tmpl"
dest = %q
prefix = %q
keys = ["/services"]
`

// confdInstalled is what confd logs (at level info) after each install.
const confdInstalled = " has been updated"

func etcdKey(id string) string { return etcdPrefix + "/services/" + id }

// etcdOp is a change as an etcd operation on the service's key.
func etcdOp(c change) clientv3.Op {
	if c.op == leave {
		return clientv3.OpDelete(etcdKey(c.id))
	}
	v, err := json.Marshal(c.meta)
	if err != nil {
		panic(err) // a map of strings always encodes
	}
	return clientv3.OpPut(etcdKey(c.id), string(v))
}

// preloadEtcd puts the n preloaded services, many to a transaction.
func preloadEtcd(ctx context.Context, cli *clientv3.Client, n int) error {
	const perTxn = 100 // etcd allows 128 operations in a transaction by default
	for i := 0; i < n; i += perTxn {
		var ops []clientv3.Op
		for j := i; j < min(n, i+perTxn); j++ {
			ops = append(ops, etcdOp(preloaded(j)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("preload etcd: %w", err)
		}
	}
	return nil
}

// confdRenderer is confd -watch on a new etcd holding the step's services.
func confdRenderer(confd, etcd string) renderer {
	return renderer{name: "confd", bin: confd, start: func(dir string, step renderStep) (rr *rendering, err error) {
		var stops []func()
		stop := func() {
			for i := len(stops) - 1; i >= 0; i-- {
				stops[i]()
			}
		}
		defer func() {
			if err != nil {
				stop()
			}
		}()
		e, err := startEtcd(etcd, filepath.Join(dir, "etcd"))
		if err != nil {
			return nil, err
		}
		stops = append(stops, e.stop)
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, err
		}
		stops = append(stops, func() { cli.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := preloadEtcd(ctx, cli, step.services); err != nil {
			return nil, err
		}

		confdir, dst := filepath.Join(dir, "confd"), filepath.Join(dir, "lines.conf")
		for _, sub := range []string{"conf.d", "templates"} {
			if err := os.MkdirAll(filepath.Join(confdir, sub), 0o755); err != nil {
				return nil, err
			}
		}
		if err := os.WriteFile(filepath.Join(confdir, "templates", "lines.tmpl"), []byte(confdTemplate), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(confdir, "conf.d", "lines.toml"), fmt.Appendf(nil, confdResource, dst, etcdPrefix), 0o644); err != nil {
			return nil, err
		}
		proc, installs, err := startCounting(confd, confdInstalled,
			"-backend", "etcdv3", "-node", e.url, "-confdir", confdir, "-watch", "-log-level", "info")
		if err != nil {
			return nil, err
		}
		stops = append(stops, proc.stop)
		return &rendering{
			proc: proc,
			dst:  dst,
			apply: func(c change) error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := cli.Do(ctx, etcdOp(c))
				return err
			},
			installs: func() (float64, error) { return float64(installs.Load()), nil },
			stop:     stop,
		}, nil
	}}
}

// startCounting starts a program and counts the lines of its standard
// error that contain marker.
func startCounting(name, marker string, args ...string) (*child, *atomic.Int64, error) {
	cmd := exec.Command(name, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	var n atomic.Int64
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), marker) {
				n.Add(1)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	return &child{cmd: cmd}, &n, nil
}

// startEtcd starts a single-member etcd on free loopback ports with its
// data in dir and waits until it is healthy; url is its client URL.
func startEtcd(bin, dir string) (*child, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	curl, purl := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmd := exec.Command(bin, "--name", "load", "--data-dir", dir,
		"--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
		"--initial-cluster", "load="+purl, "--log-level", "error")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, url: curl}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(curl + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
	}
	c.stop()
	return nil, fmt.Errorf("%s not healthy within 30s", bin)
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close() // held until all are picked, so that none comes twice
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
