package main

import (
	"errors"
	"fmt"
	"io"

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
	switch {
	case d.check:
		size, err := boltstore.Check(dataDir)
		if err != nil {
			return explainStoreError(err)
		}
		fmt.Fprintf(stdout, "%s/%s: sound (%d bytes in use)\n", dataDir, boltstore.FileName, size)
	case d.compact:
		before, after, err := boltstore.Compact(dataDir)
		if err != nil {
			return explainStoreError(err)
		}
		fmt.Fprintf(stdout, "%s/%s: compacted from %d to %d bytes\n", dataDir, boltstore.FileName, before, after)
	case d.backup != "":
		n, err := boltstore.Backup(dataDir, d.backup)
		if err != nil {
			return fmt.Errorf("back up %s: %w", dataDir, explainStoreError(err))
		}
		fmt.Fprintf(stdout, "backed up %s to %s (%d bytes)\n", dataDir, d.backup, n)
	case d.restore != "":
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

// explainStoreError adds to an error opening the embedded store what the
// operator can do about it.
func explainStoreError(err error) error {
	var damaged *boltstore.DamagedError
	if errors.As(err, &damaged) {
		return fmt.Errorf("%w; restore it from a backup (svcreg server --restore FILE), or move it aside to start an empty registry", err)
	}
	return err
}
