//go:build !linux

package server

import "errors"

// connWatcher is Linux's; elsewhere a parked poll whose client left is
// freed when its wait ends.
type connWatcher struct{}

func newConnWatcher(func(*parkedPoll, bool)) (*connWatcher, error) {
	return nil, errors.New("not supported on this system")
}

func (*connWatcher) add(*parkedPoll)          {}
func (*connWatcher) remove(...*parkedPoll)    {}
func (*connWatcher) close()                   {}
func (*connWatcher) keep(*parkedPoll) bool    { return false }
func (*connWatcher) keptPolls() []*parkedPoll { return nil }

func writeWatched(_ *parkedPoll, b []byte) ([]byte, bool, error) { return b, false, nil }
