package supervise

// Stopped is what StopLeftovers did.
type Stopped struct {
	// Signalled is how many processes a signal reached.
	Signalled int
	// Killed are the pids killed (SIGKILL) after the grace.
	Killed []int
	// Left are the pids still running when it gave up.
	Left []int
	// Err is the first signal that could not be sent.
	Err error
}

// FirstPids is pids cut to its first 20, for one log line however many
// there are.
func FirstPids(pids []int) []int { return pids[:min(len(pids), 20)] }
