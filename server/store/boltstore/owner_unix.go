//go:build unix

package boltstore

import (
	"fmt"
	"os"
	"syscall"
)

// keepOwner gives the file at path the owner and group of the file or
// directory ref, when this process is root: a maintenance command an
// operator runs as root (--restore, --compact) must not leave the server's
// database owned by root, which a server running as its own user (or
// systemd's DynamicUser=) then cannot open. The file is changed through a
// descriptor opened without following a link, and only if it is a
// regular file of one name: in a directory the server's user can write,
// a name swapped for a link to (or a hard link of) another file must not
// give that file away.
func keepOwner(path, ref string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	ffi, err := f.Stat()
	if err != nil {
		return err
	}
	if fst, ok := ffi.Sys().(*syscall.Stat_t); !ffi.Mode().IsRegular() || ok && fst.Nlink != 1 {
		return fmt.Errorf("%s is no longer the file written (not a regular file of one name)", path)
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
