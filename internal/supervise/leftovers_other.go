//go:build !linux

package supervise

import "time"

// Leftovers is empty: only Linux makes the program a subreaper, to which
// the command's orphans are re-parented.
func Leftovers() []int { return nil }

// StopLeftovers has none to stop.
func StopLeftovers(grace, killWait time.Duration, hurry <-chan struct{}) Stopped { return Stopped{} }

// noteInherited has nothing to note: there are no leftovers.
func noteInherited() {}
