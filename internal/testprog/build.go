package testprog

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
)

// Build builds the main package in dir (a directory of this module's
// sources) without the race detector, and returns the program's path. A
// helper program that is not the code under test (an etcd member, a load
// generator) then costs what it costs in production, not the several times
// that instrumented code does, while the test binary that starts it may be
// built with -race.
//
// The program is kept in the temporary directory, one per source directory
// and user, and built by one process at a time (go test runs several test
// binaries at once): after the first build, go build finds it up to date in
// a fraction of a second.
func Build(dir string) (string, error) {
	out := buildDir(dir)
	if err := os.MkdirAll(out, 0o700); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(out, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	bin := filepath.Join(out, filepath.Base(dir))
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		goCmd = "go"
	}
	cmd := exec.Command(goCmd, "build", "-race=false", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", dir, err, out)
	}
	return bin, nil
}

// buildDir is where Build keeps the program built from dir.
func buildDir(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(os.TempDir(), fmt.Sprintf("svcreg-testprog-%d-%x", os.Getuid(), sum[:6]))
}

// SourceDir returns the directory of the source file that calls it, joined
// with elem: where a package finds the sources of its helper programs.
func SourceDir(elem ...string) (string, error) {
	_, file, _, ok := runtime.Caller(1)
	if !ok {
		return "", fmt.Errorf("testprog: cannot tell where the calling source file is")
	}
	return filepath.Join(append([]string{filepath.Dir(file)}, elem...)...), nil
}
