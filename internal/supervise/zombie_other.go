//go:build unix && !linux

package supervise

// nextZombie is the pid to reap: without waitid's WNOWAIT the reaper
// cannot look before it reaps, so while children started with StartOwned
// run, only the command is reaped (none before it has started: command
// is not a pid then), and any child (-1) otherwise.
func nextZombie(command int) (pid int, blocked bool) {
	ownedMu.Lock()
	defer ownedMu.Unlock()
	if len(owned) > 0 {
		if command <= 0 {
			return 0, true
		}
		return command, true
	}
	return -1, false
}
