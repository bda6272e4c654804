package supervise

import (
	"bytes"
	"os"
	"strconv"
)

// Leftovers are the program's live children other than owned ones: once
// the command has exited, the descendants it left, which were re-parented
// to the program (a subreaper, or PID 1). Read from /proc (each process's
// parent and state); a process that ends meanwhile is left out.
func Leftovers() []int {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range dir {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 2 || string(f[0]) == "Z" || string(f[0]) == "X" {
			continue
		}
		if ppid, err := strconv.Atoi(string(f[1])); err == nil && ppid == self && !isOwned(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
