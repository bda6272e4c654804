//go:build etcd

package watcher_test

// Built with -tags etcd, these tests can run their servers on the etcd
// store: SVCREG_TEST_STORE=etcd go test -tags etcd ./...
import _ "github.com/svcreg/svcreg/internal/testserver/etcdserver"
