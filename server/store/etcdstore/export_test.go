package etcdstore

// Crash stops s as a killed process would stop: its background work ends
// where it is, and its node key is left for its lease to expire.
func Crash(s *Store) {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
}

// LoseNextHeartbeatAnswer makes s's next heartbeat batch fail after it
// committed, as if etcd's answer was lost on the way back.
func LoseNextHeartbeatAnswer(s *Store) { s.loseAnswer.Store(true) }
