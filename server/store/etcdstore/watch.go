package etcdstore

import (
	"context"
	"errors"
	"log/slog"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A watch is a stream on which etcd sends only when something changed, so
// a member that stops answering without closing its connection (see
// hedge.go) holds it without a sign: the client gives up on the
// connection only after 13 s (client.go), and meanwhile the node sees no
// other node's commit: its long-polls do not wake, and hand-over requests
// and changes of the nodes wait. So where the client knows several
// members, each watch goes to one of them over a connection of its own
// (the memberConns, in turn, those that hung last), and while the watch
// is idle the node asks that member for a key by a local read
// (serializable: the member answers alone, if it knows a leader) every
// watchProbe; a member that does not answer within watchProbe, or cannot
// be reached, or that has no leader (cut off from the others, or an
// election), ends the watch, and its loop sets it up again, at another
// member. A slow answer costs only that: the watch resumes from its next
// revision, and the member is tried last for a while.

// watchProbe is how long a watch may be idle before its member is asked,
// and how long it may take to answer: twice hedgeAfter, 1 s by default.
func (s *Store) watchProbe() time.Duration { return 2 * s.hedgeAfter() }

// watch is s.cli.Watch(ctx, key, opts...) with created notification, at a
// member of its own when the client knows more than one. Its channel
// closes without an error when that member stops answering; what names
// the watch in the log.
func (s *Store) watch(ctx context.Context, what, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	opts = append(opts, clientv3.WithCreatedNotify())
	members := s.members()
	if len(members) == 0 || members[0].conn == nil { // none, or a test's stand-ins
		return s.cli.Watch(ctx, key, opts...)
	}
	m := members[0]
	ctx, cancel := context.WithCancel(ctx)
	w := clientv3.NewWatchFromWatchClient(pb.NewWatchClient(m.conn), s.cli)
	in := w.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	s.wg.Go(func() {
		defer close(out)
		defer w.Close()
		defer cancel()
		every := s.watchProbe()
		idle := time.NewTimer(every)
		defer idle.Stop()
		probed := make(chan error, 1) // one probe at a time
		probing := false
		for {
			select {
			case resp, ok := <-in:
				if !ok {
					return
				}
				storeLater(&m.answered, monoNow())
				if !probing {
					idle.Reset(every)
				}
				select {
				case out <- resp:
				case <-ctx.Done():
					return
				}
			case <-idle.C:
				probing = true
				go func() {
					// With the watch's leader requirement: a member
					// cut off from the others (it has no leader) sees
					// no commit either.
					pctx, pcancel := context.WithTimeout(ctx, every)
					defer pcancel()
					_, err := m.kv.Get(pctx, key, clientv3.WithSerializable(), clientv3.WithKeysOnly())
					probed <- err
				}()
			case err := <-probed:
				probing = false
				if err != nil && ctx.Err() == nil && retryable(err) {
					s.probeFailed(m, what, err)
					return
				}
				if err == nil {
					storeLater(&m.answered, monoNow())
				}
				idle.Reset(every)
			case <-ctx.Done():
				return
			}
		}
	})
	return out
}

// probeFailed notes that m did not answer an idle watch's probe (err):
// it is tried last from now on, and unless it said it has no leader,
// which every member says for a moment in an election, requests go
// first to the others for a while (someHang). Said once while a member
// stays silent (or etcd is down: every member in turn), and not at all
// for an election.
func (s *Store) probeFailed(m *memberConn, what string, err error) {
	msg, level := "etcd member does not answer; watching at another", slog.LevelWarn
	noLeader := errors.Is(err, rpctypes.ErrNoLeader)
	if noLeader || m.hangs() {
		level = slog.LevelDebug
	}
	if noLeader {
		msg = "etcd member has no leader; watching at another"
		storeLater(&m.hung, monoNow())
	} else {
		s.markHung(m)
	}
	s.metrics.watchStalls.Inc()
	s.log.Log(s.ctx, level, msg, "watch", what, "endpoint", m.ep, "err", err)
}
