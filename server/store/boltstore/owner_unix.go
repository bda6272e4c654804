//go:build unix

package boltstore

import (
	"os"
	"syscall"
)

// keepOwner gives the file at path the owner and group of the file or
// directory ref, when this process is root: a maintenance command an
// operator runs as root (--restore, --compact) must not leave the server's
// database owned by root, which a server running as its own user (or
// systemd's DynamicUser=) then cannot open.
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
	return os.Lchown(path, int(st.Uid), int(st.Gid))
}
