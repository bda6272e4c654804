// Package fsync makes a directory's entries durable: after a file is
// created, renamed or removed in it, syncing the directory is what makes
// that change survive a crash.
package fsync

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Dir syncs the directory dir.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// MkdirAll is os.MkdirAll that makes the directories it creates durable:
// it syncs the parent of each once it has created it, so that a crash
// cannot take a new directory away, with the files synced in it. Those it
// creates get perm whatever the umask.
func MkdirAll(path string, perm os.FileMode) error {
	path = filepath.Clean(path)
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: path, Err: errors.New("not a directory")}
	}
	parent := filepath.Dir(path)
	if parent != path {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(path, perm); err != nil {
		// Made meanwhile by someone else, who syncs it.
		if fi, serr := os.Stat(path); errors.Is(err, fs.ErrExist) && serr == nil && fi.IsDir() {
			return nil
		}
		return err
	}
	if err := os.Chmod(path, perm); err != nil {
		return err
	}
	return Dir(parent)
}
