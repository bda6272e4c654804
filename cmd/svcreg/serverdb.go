package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/svcreg/svcreg/server/store/boltstore"
)

// dbFlags are the server's maintenance commands on the embedded store's
// file: each runs instead of the server, and exits.
type dbFlags struct {
	check   bool
	compact bool
	backup  string
	restore string
}

func (d dbFlags) any() bool { return d.check || d.compact || d.backup != "" || d.restore != "" }

// runDBCommand runs the one maintenance command d asks for on the database
// under dataDir.
func runDBCommand(d dbFlags, dataDir string, stdout io.Writer) error {
	n := 0
	for _, set := range []bool{d.check, d.compact, d.backup != "", d.restore != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usagef("give one of --check, --compact, --backup and --restore")
	}
	if (d.check && os.Getenv(checkChildEnv) == "") || d.compact || d.backup != "" {
		// Each needs the database there: without it, the check would
		// pass over nothing, and the compaction would create one.
		if err := haveDatabase(dataDir); err != nil {
			return err
		}
	}
	switch {
	case d.check && os.Getenv(checkChildEnv) != "":
		path := os.Getenv(checkChildEnv) // the file to check (a backup to restore, say)
		size, err := boltstore.CheckFile(path)
		if err != nil {
			return explainFileError(dataDir, path, err)
		}
		fmt.Fprintf(stdout, "%s: sound (%d bytes in use)\n", path, size)
	case d.check:
		out, err := checkInChild(dataDir, 0)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, out)
	case d.compact:
		// Checked in a child first, as at startup: the compaction's own
		// read of a damaged file would crash this process.
		if _, err := checkInChild(dataDir, 0); err != nil {
			return err
		}
		before, after, err := boltstore.Compact(dataDir)
		if err != nil {
			return explainStoreError(err)
		}
		if after >= before {
			fmt.Fprintf(stdout, "%s/%s: nothing to give back (%d bytes; compacted, it would take %d); left as it was\n", dataDir, boltstore.FileName, before, after)
		} else {
			fmt.Fprintf(stdout, "%s/%s: compacted from %d to %d bytes\n", dataDir, boltstore.FileName, before, after)
		}
	case d.backup != "":
		if !boltstore.Held(dataDir) {
			// No server: the backup reads the file, checked in a child first.
			if _, err := checkInChild(dataDir, 0); err != nil {
				return fmt.Errorf("back up %s: %w", dataDir, err)
			}
		}
		n, err := boltstore.Backup(dataDir, d.backup)
		if err != nil {
			return fmt.Errorf("back up %s: %w", dataDir, explainStoreError(err))
		}
		fmt.Fprintf(stdout, "backed up %s to %s (%d bytes)\n", dataDir, d.backup, n)
	case d.restore != "":
		if _, err := checkFileInChild(dataDir, d.restore, 0); err != nil {
			return fmt.Errorf("restore %s: %w", d.restore, err)
		}
		replaced, err := boltstore.Restore(dataDir, d.restore)
		if err != nil {
			return fmt.Errorf("restore %s: %w", d.restore, err)
		}
		fmt.Fprintf(stdout, "restored %s into %s\n", d.restore, dataDir)
		if replaced != "" {
			fmt.Fprintf(stdout, "the database it replaced is kept as %s\n", replaced)
		}
	}
	return nil
}

// haveDatabase returns an error that says what to fix if dataDir holds no
// database file.
func haveDatabase(dataDir string) error {
	path := filepath.Join(dataDir, boltstore.FileName)
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if _, err := os.Stat(dataDir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--data-dir %q does not exist: check --data-dir (the directory a server was started with)", dataDir)
	}
	return fmt.Errorf("--data-dir %q holds no database (no %s): check --data-dir (the directory a server was started with)", dataDir, boltstore.FileName)
}

// explainStoreError adds to an error opening the embedded store what the
// operator can do about it.
func explainStoreError(err error) error {
	var damaged *boltstore.DamagedError
	if errors.As(err, &damaged) {
		return fmt.Errorf("%w; restore it from a backup (svcreg server --restore FILE), or move it aside to start an empty registry", err)
	}
	return err
}

// explainBackupError is explainStoreError for a backup given to --restore,
// which another backup replaces.
func explainBackupError(err error) error {
	var damaged *boltstore.DamagedError
	if errors.As(err, &damaged) {
		return fmt.Errorf("the backup %s is damaged or not a svcreg database: %s; give another backup", damaged.Path, damaged.Reason)
	}
	return err
}

// explainFileError explains an error checking the file at path: the
// database under dataDir (explainStoreError), or a backup to restore.
func explainFileError(dataDir, path string, err error) error {
	if path != filepath.Join(dataDir, boltstore.FileName) {
		return explainBackupError(err)
	}
	return explainStoreError(err)
}

// checkChildEnv marks the child process that checks the database, and
// names the file it checks (see checkInChild).
const checkChildEnv = "SVCREG_CHECK_CHILD"

// dbCheckTimeout bounds the check of a database: far above what a sound file
// of any size takes, it ends a check caught in a loop of damaged pages.
const dbCheckTimeout = 2 * time.Minute

// checkInChild checks the database under dataDir in a child process
// (svcreg server --check): bbolt checks the file on goroutines of its own,
// where a damaged page that points outside the file faults, or loops, past
// any recovery. A check that crashes or runs out of time is reported as a
// damaged database, in one line; a missing file (a fresh data directory)
// passes. It returns the child's report.
//
// limit bounds the check (dbCheckTimeout at startup); 0 sets none, for a
// command the operator runs, which Ctrl-C ends.
func checkInChild(dataDir string, limit time.Duration) (string, error) {
	path := filepath.Join(dataDir, boltstore.FileName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return checkFileInChild(dataDir, path, limit)
}

// checkFileInChild is checkInChild of the database file at path.
func checkFileInChild(dataDir, path string, limit time.Duration) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("check %s: find this program to run the check: %w", path, err)
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if limit > 0 {
		ctx, cancel = context.WithTimeout(ctx, limit)
	}
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "server", "--check", "--data-dir", dataDir)
	cmd.Args[0] = os.Args[0] // the name this program was started under
	// The child works in this one's directory: a relative path holds.
	cmd.Env = append(os.Environ(), checkChildEnv+"="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), nil
	case ctx.Err() != nil:
		// Not said to be damaged, nor to be moved aside: a very large
		// file on a slow disk could take this long too.
		return "", fmt.Errorf("checking %s did not finish within %v: its pages may loop (damage), or it is very large on a slow disk; run svcreg server --check --data-dir %s (no time limit) before you restore or move it", path, limit, dataDir)
	case !errors.As(err, &exit):
		return "", fmt.Errorf("check %s: %w", path, err)
	case exit.ExitCode() == exitError:
		// The child's own one-line error.
		msg, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		return "", errors.New(strings.TrimPrefix(msg, "svcreg server: "))
	}
	first, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
	return "", explainFileError(dataDir, path, &boltstore.DamagedError{Path: path, Reason: fmt.Sprintf("checking it crashed (%s: %s)", exit, first)})
}
