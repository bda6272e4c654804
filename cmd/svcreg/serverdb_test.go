package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcreg/svcreg/server/store/boltstore"
)

// dbWithData runs the real server on a new data directory, writes n
// configuration values of about 600 bytes and kills it; it returns the
// directory.
func dbWithData(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	srv := startServerProcess(t, "--data-dir", dir)
	a := login(t, srv.url, "dev")
	putConfig(t, a, "key", n)
	srv.kill()
	return dir
}

// putConfig sets the values PREFIX0 … PREFIX(n-1), each of 600 bytes.
func putConfig(t *testing.T, a *api, prefix string, n int) {
	t.Helper()
	value := strings.Repeat("x", 600)
	concurrently(t, n, func(i int) error {
		if code, body, err := a.do("PUT", fmt.Sprintf("/configuration/%s%d", prefix, i), map[string]string{"value": value}); err != nil || code != http.StatusNoContent {
			return fmt.Errorf("set %s%d: %d %s %v", prefix, i, code, body, err)
		}
		return nil
	})
}

// concurrently runs do(0) … do(n-1), 16 at a time (the server commits
// concurrent writes together, where one at a time each waits for its own
// fsync), and fails the test with the first error.
func concurrently(t *testing.T, n int, do func(i int) error) {
	t.Helper()
	errs := make(chan error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(16, n) {
		wg.Go(func() {
			for i := range next {
				errs <- do(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// runSvcreg runs the real svcreg with args to the end and returns its exit
// code, stdout and stderr.
func runSvcreg(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), execEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("svcreg %s did not exit: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// A damaged database file stops the server at once with one line that says
// what is wrong and what to do: never a Go stack trace, and never an empty
// registry started over a file that held data.
func TestDamagedDatabaseStopsStartup(t *testing.T) {
	t.Parallel()
	orig := dbWithData(t, 300)
	used, err := boltstore.Check(orig)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(orig, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"truncated to half", func(b []byte) []byte { return b[:used/2] }, "truncated"},
		{"random bytes mid-file", func(b []byte) []byte {
			// Over the middle half of the pages in use.
			for i := used / 4; i < 3*used/4; i++ {
				b[i] = byte(rng.Uint32())
			}
			return b
		}, "damaged"},
		{"truncated to 0 bytes", func([]byte) []byte { return nil }, "empty (0 bytes)"},
		{"a branch page pointing past the end", func(b []byte) []byte {
			// bbolt's own check faults on it, on a goroutine of its own.
			// Every page that says it is a branch: some are free pages,
			// left as they were when freed, and damage to those alone
			// is no damage.
			const pageSize = 4096
			branches := 0
			for off := 2 * pageSize; off+pageSize <= int(used); off += pageSize {
				if binary.LittleEndian.Uint16(b[off+8:]) == 0x01 { // a branch page
					binary.LittleEndian.PutUint64(b[off+16+8:], uint64(used/pageSize+300)) // its first child
					branches++
				}
			}
			if branches == 0 {
				t.Fatal("no branch page in the database")
			}
			return b
		}, "damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, boltstore.FileName)
			if err := os.WriteFile(path, tc.damage(bytes.Clone(data)), 0o600); err != nil {
				t.Fatal(err)
			}
			// The maintenance commands too: each would read the file
			// in-process, where a fault is past recovery.
			// --restore of the file advises another backup, not a restore.
			for _, args := range [][]string{
				{"server", "--dev", "--listen", "127.0.0.1:0", "--data-dir", dir},
				{"server", "--check", "--data-dir", dir},
				{"server", "--compact", "--data-dir", dir},
				{"server", "--backup", filepath.Join(t.TempDir(), "backup.db"), "--data-dir", dir},
				{"server", "--restore", path, "--data-dir", t.TempDir()},
			} {
				code, _, stderr := runSvcreg(t, args...)
				if code != exitError {
					t.Errorf("%v: exit code %d, want %d; stderr:\n%s", args, code, exitError, stderr)
				}
				advice := "svcreg server --restore FILE"
				if args[1] == "--restore" {
					advice = "give another backup"
				}
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				if len(lines) != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, advice) {
					t.Errorf("%v: stderr is not one line saying %q and %q:\n%s", args, tc.want, advice, stderr)
				}
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != int64(len(tc.damage(bytes.Clone(data)))) {
				t.Errorf("the damaged file was changed: %v, %v", fi, err)
			}
		})
	}
}

// A backup taken from a running server while it takes writes restores into
// a database that holds every write acknowledged before the backup began.
func TestBackupOfARunningServerRestores(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServerProcess(t, "--data-dir", dir)
	a := login(t, srv.url, "dev")
	putConfig(t, a, "before", 50)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.do("PUT", fmt.Sprintf("/configuration/during%d", i), map[string]string{"value": "v"})
		}
	}()
	backup := filepath.Join(t.TempDir(), "backup.db")
	code, stdout, stderr := runSvcreg(t, "server", "--backup", backup, "--data-dir", dir)
	close(stop)
	<-done
	if code != 0 {
		t.Fatalf("--backup of a running server: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runSvcreg(t, "server", "--restore", backup, "--data-dir", dir); code != exitError || !strings.Contains(stderr, "stop the server first") {
		t.Errorf("--restore over a running server: exit %d, %s; want it refused", code, stderr)
	}
	srv.kill()

	if code, stdout, stderr := runSvcreg(t, "server", "--restore", backup, "--data-dir", dir); code != 0 || !strings.Contains(stdout, "kept as") {
		t.Fatalf("--restore: exit %d\n%s%s", code, stdout, stderr)
	}
	replaced, _ := filepath.Glob(filepath.Join(dir, boltstore.FileName+".replaced-*"))
	if len(replaced) != 1 {
		t.Errorf("the replaced database is not kept: %v", replaced)
	}
	srv = startServerProcess(t, "--data-dir", dir)
	a = login(t, srv.url, "dev")
	for i := range 50 {
		if code, body, err := a.do("GET", fmt.Sprintf("/configuration/before%d", i), nil); err != nil || code != http.StatusOK {
			t.Fatalf("before%d after the restore: %d %s %v", i, code, body, err)
		}
	}
}

// A backup that is not a sound database is refused by --restore.
func TestRestoreRefusesADamagedBackup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(bad, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runSvcreg(t, "server", "--restore", bad, "--data-dir", dir)
	want := "the backup " + bad + " is damaged or not a svcreg database: invalid database; give another backup\n"
	if code != exitError || !strings.Contains(stderr, want) || strings.Contains(stderr, "restore it from a backup") {
		t.Errorf("--restore of a damaged backup: exit %d, %s; want %q", code, stderr, want)
	}
	if _, err := os.Stat(filepath.Join(dir, boltstore.FileName)); !os.IsNotExist(err) {
		t.Errorf("a database was written: %v", err)
	}
}

// Deleted data leaves free pages that the file keeps; --compact gives them
// back, and keeps everything else.
func TestCompactGivesSpaceBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServerProcess(t, "--data-dir", dir, "--max-events", "10")
	a := login(t, srv.url, "dev")
	putConfig(t, a, "gone", 500)
	concurrently(t, 500, func(i int) error {
		if code, body, err := a.do("DELETE", fmt.Sprintf("/configuration/gone%d", i), nil); err != nil || code != http.StatusNoContent {
			return fmt.Errorf("delete gone%d: %d %s %v", i, code, body, err)
		}
		return nil
	})
	putConfig(t, a, "kept", 1)
	if code, _, stderr := runSvcreg(t, "server", "--compact", "--data-dir", dir); code != exitError || !strings.Contains(stderr, "another process holds it") {
		t.Errorf("--compact of a running server's database: exit %d, %s; want it refused", code, stderr)
	}
	srv.kill()
	path := filepath.Join(dir, boltstore.FileName)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runSvcreg(t, "server", "--compact", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("--compact: exit %d\n%s%s", code, stdout, stderr)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() > before.Size()/2 {
		t.Errorf("--compact: %d bytes before, %d after; want less than half", before.Size(), after.Size())
	}
	// A file with nothing more to give back is left as it was, not
	// replaced by a copy of the same size or larger.
	code, stdout, stderr = runSvcreg(t, "server", "--compact", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "nothing to give back") {
		t.Fatalf("--compact again: exit %d\n%s%s", code, stdout, stderr)
	}
	if again, err := os.Stat(path); err != nil || !os.SameFile(after, again) {
		t.Errorf("--compact of a compact file replaced it: %v", err)
	}
	srv = startServerProcess(t, "--data-dir", dir)
	a = login(t, srv.url, "dev")
	if code, body, err := a.do("GET", "/configuration/kept0", nil); err != nil || code != http.StatusOK {
		t.Errorf("a value after --compact: %d %s %v", code, body, err)
	}
	if code, _, err := a.do("GET", "/configuration/gone0", nil); err != nil || code != http.StatusNotFound {
		t.Errorf("a deleted value after --compact: %d %v", code, err)
	}
}

// svcreg server limits each account's writes by default; --write-burst
// and --write-rate set the bucket.
func TestServerLimitsWrites(t *testing.T) {
	t.Parallel()
	srv := startServerProcess(t, "--data-dir", t.TempDir(), "--write-burst", "3", "--write-rate", "0.01")
	a := login(t, srv.url, "dev")
	putConfig(t, a, "ok", 3)
	code, out, err := a.doJSON("PUT", "/configuration/over", map[string]string{"value": "v"})
	if err != nil || code != http.StatusBadRequest || out["type"] != "rateLimitReached" {
		t.Errorf("a write past the burst: %d %v %v, want 400 rateLimitReached", code, out, err)
	}
	if code, _, err := a.do("GET", "/configuration/ok0", nil); err != nil || code != http.StatusOK {
		t.Errorf("a read past the write burst: %d %v", code, err)
	}
}

// --check, --compact and --backup of a data directory that holds no
// database, or does not exist (a mistyped --data-dir), fail saying so, and
// create neither the directory nor a database.
func TestDBCommandsWithoutADatabase(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	missing := filepath.Join(t.TempDir(), "svcreg-data")
	backup := filepath.Join(t.TempDir(), "backup.db")
	for _, tc := range []struct{ dir, want string }{
		{empty, "holds no database (no svcreg.db): check --data-dir"},
		{missing, "does not exist: check --data-dir"},
	} {
		for _, args := range [][]string{
			{"server", "--check", "--data-dir", tc.dir},
			{"server", "--compact", "--data-dir", tc.dir},
			{"server", "--backup", backup, "--data-dir", tc.dir},
		} {
			code, stdout, stderr := runSvcreg(t, args...)
			if code != exitError || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, ".new") {
				t.Errorf("%v: exit %d, %s%s; want %d and %q", args, code, stdout, stderr, exitError, tc.want)
			}
		}
	}
	if names, _ := os.ReadDir(empty); len(names) != 0 {
		t.Errorf("a data directory without a database now holds %v", names)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a missing data directory was created: %v", err)
	}
	if _, err := os.Stat(backup); !os.IsNotExist(err) {
		t.Errorf("a backup was written: %v", err)
	}
}
