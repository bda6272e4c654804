package testprog

import (
	"flag"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// waitingTestsPerCPU is how many tests run at once per CPU in a test
// binary set up by ChildProcessTests, unless -parallel says otherwise.
const waitingTestsPerCPU = 4

// ChildProcessTests sets up a test binary whose tests spend their time
// waiting on child processes (the binary itself run as the real program,
// nginx, HAProxy, chromium) rather than computing. TestMain calls it before
// it runs the tests.
//
// A -race binary sleeps a second before it exits, by default: the children,
// which inherit this environment, do not. And go test runs one parallel
// test per CPU by default, which leaves the machine idle while those tests
// wait: several per CPU run at once instead. A -parallel on the command
// line, parsed later, still decides.
func ChildProcessTests() {
	// The commands the tests run by name (the nginx example's check script
	// runs nginx) find the programs Find finds.
	os.Setenv("PATH", pathWithSbin(os.Getenv("PATH")))
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	ParallelPerCPU(waitingTestsPerCPU)
}

// ParallelPerCPU makes a test binary run n parallel tests per CPU at once
// instead of go test's one, for tests that mostly wait (on an etcd's
// elections and leases, on long-polls, on timers) rather than compute.
// TestMain calls it before it runs the tests; a -parallel on the command
// line, parsed later, still decides.
func ParallelPerCPU(n int) {
	flag.Set("test.parallel", strconv.Itoa(n*runtime.GOMAXPROCS(0)))
}
