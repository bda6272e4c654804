// Package fsync makes a directory's entries durable: after a file is
// created, renamed or removed in it, syncing the directory is what makes
// that change survive a crash.
package fsync

import "os"

// Dir syncs the directory dir.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
