// Package procstat reads a process's /proc/<pid>/stat (Linux).
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Fields returns the fields of /proc/<pid>/stat that follow the command
// name, the state (field 3 in proc(5)) first: field n of proc(5) is at
// index n-3. The name, field 2, is in parentheses and may hold spaces and
// parentheses itself, so it is found by the last ')'.
func Fields(pid int) ([]string, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	return parse(pid, raw)
}

func parse(pid int, raw []byte) ([]string, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return nil, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, raw)
	}
	return strings.Fields(string(raw[i+1:])), nil
}
