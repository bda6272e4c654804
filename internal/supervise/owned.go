package supervise

import (
	"os/exec"
	"sync"
)

// The children a program starts besides its command (check and reload
// commands, say) are collected by exec.Cmd.Wait, not by the reaper. The
// reaper must therefore tell them from orphans, and must not decide about
// a child between its fork and its registration here: a starter holds
// starting for reading across both, the reaper holds it for writing while
// it reaps. Children are process-wide, and so is this table.
var (
	starting sync.RWMutex
	ownedMu  sync.Mutex
	owned    = map[int]bool{}
)

// StartOwned starts cmd as a child that the caller collects with
// cmd.Wait; the reaper of a supervised command leaves it alone. Call
// release after cmd.Wait returns. Any program may use it, supervising or
// not.
func StartOwned(cmd *exec.Cmd) (release func(), err error) {
	starting.RLock()
	defer starting.RUnlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	ownedMu.Lock()
	owned[pid] = true
	ownedMu.Unlock()
	return func() {
		ownedMu.Lock()
		delete(owned, pid)
		ownedMu.Unlock()
	}, nil
}

func isOwned(pid int) bool {
	ownedMu.Lock()
	defer ownedMu.Unlock()
	return owned[pid]
}
