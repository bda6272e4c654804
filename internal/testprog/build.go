package testprog

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
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
// a fraction of a second. Each Build removes the programs of source
// directories that are gone (pruneGone).
func Build(dir string) (string, error) {
	out := buildDir(dir)
	if err := os.MkdirAll(out, 0o700); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(out, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	bin := filepath.Join(out, filepath.Base(dir))
	cmd := exec.Command(goCommand(), "build", "-race=false", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", dir, err, out)
	}
	if err := os.WriteFile(filepath.Join(out, sourceRecord), []byte(dir), 0o600); err != nil {
		return "", err
	}
	pruneGone(out)
	return bin, nil
}

// In a program's build directory: lockFile, which one Build at a time
// holds, and sourceRecord, which names the source directory the program
// was built from.
const (
	lockFile     = "lock"
	sourceRecord = "source"
)

// pruneGone removes the programs, other than keep's, of this user's build
// directories whose source directory is gone, a deleted checkout's: each
// is tens of megabytes, and a CI machine that tests a fresh clone every
// time would gather one per clone. It decides under the directory's lock
// (one another process holds is left alone), and keeps the directory and
// its lock file: a Build of a source that came back at the same path (a
// workspace cloned again) may be waiting on that lock, and then builds
// there as usual. A directory without a source record is left alone.
func pruneGone(keep string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("svcreg-testprog-%d-*", os.Getuid())))
	for _, d := range dirs {
		if d != keep && sourceGone(d) {
			pruneLocked(d)
		}
	}
}

// sourceGone reports whether d's source record names a directory that does
// not exist.
func sourceGone(d string) bool {
	src, err := os.ReadFile(filepath.Join(d, sourceRecord))
	if err != nil || len(src) == 0 {
		return false
	}
	_, err = os.Stat(string(src))
	return errors.Is(err, fs.ErrNotExist)
}

// pruneLocked removes everything in d but its lock file, if it can take the
// lock at once and the source is still gone once it holds it.
func pruneLocked(d string) {
	lock, err := os.Open(filepath.Join(d, lockFile))
	if err != nil {
		return
	}
	defer lock.Close()
	if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil || !sourceGone(d) {
		return
	}
	entries, _ := os.ReadDir(d)
	for _, e := range entries {
		if e.Name() != lockFile {
			os.RemoveAll(filepath.Join(d, e.Name()))
		}
	}
}

// goCommand is the go command of the toolchain that built the test, or the
// one on PATH (also when the test binary was built with -trimpath, which
// leaves it no GOROOT).
func goCommand() string {
	//lint:ignore SA1019 the GOROOT the test was built with is the one wanted: its toolchain runs on this machine
	if root := runtime.GOROOT(); root != "" {
		if goCmd := filepath.Join(root, "bin", "go"); fileExists(goCmd) {
			return goCmd
		}
	}
	return "go"
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
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
	return sourceDir(file, elem...)
}

// sourceDir is SourceDir for the source file named file. A binary built
// with -trimpath names its files by their package's import path instead of
// where they are: go list finds that package's directory (the test runs
// inside the module).
func sourceDir(file string, elem ...string) (string, error) {
	dir := filepath.Dir(file)
	if !filepath.IsAbs(dir) {
		cmd := exec.Command(goCommand(), "list", "-f", "{{.Dir}}", filepath.ToSlash(dir))
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			return "", fmt.Errorf("testprog: find the sources of %s: %v\n%s", dir, err, stderr)
		}
		dir = strings.TrimSpace(string(out))
	}
	return filepath.Join(append([]string{dir}, elem...)...), nil
}
