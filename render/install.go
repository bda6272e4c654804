package render

import (
	"errors"
	"fmt"
	"github.com/svcreg/svcreg/internal/fsync"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// fileOwner is the uid and gid a destination should have; -1 leaves one as
// it is.
type fileOwner struct{ uid, gid int }

// ownerOf resolves a template's user and group (names or numeric ids).
func ownerOf(t TemplateConfig) (fileOwner, error) {
	o := fileOwner{-1, -1}
	if t.User != "" {
		if id, err := strconv.Atoi(t.User); err == nil {
			if id < 0 {
				return o, fmt.Errorf("user %q: not a user id (0 or more) or name", t.User)
			}
			o.uid = id
		} else {
			u, err := user.Lookup(t.User)
			if err != nil {
				return o, fmt.Errorf("user %q: %w", t.User, err)
			}
			o.uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if t.Group != "" {
		if id, err := strconv.Atoi(t.Group); err == nil {
			if id < 0 {
				return o, fmt.Errorf("group %q: not a group id (0 or more) or name", t.Group)
			}
			o.gid = id
		} else {
			g, err := user.LookupGroup(t.Group)
			if err != nil {
				return o, fmt.Errorf("group %q: %w", t.Group, err)
			}
			o.gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return o, nil
}

// writeStaged writes data to path (replacing it), with the destination's
// mode and owner, and syncs it. The name is predictable and the directory
// may be writable by others: a stale file or symlink there is removed and
// the file is created anew (O_EXCL, O_NOFOLLOW), so that the chmod and
// chown below never reach another file through a symlink.
func writeStaged(path string, data []byte, mode os.FileMode, owner fileOwner) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode&^0o077)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil { // the umask applied at create
		f.Close()
		return err
	}
	if owner.uid >= 0 || owner.gid >= 0 {
		if err := f.Chown(owner.uid, owner.gid); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// destinationMode returns the mode and owner a destination gets: the
// template's settings, else those of the current file (its user only as
// root; its group as root or a member of it), else 0644 and the
// process's own.
func destinationMode(t TemplateConfig, current fs.FileInfo) (os.FileMode, fileOwner, error) {
	mode := os.FileMode(0o644)
	if current != nil {
		mode = current.Mode().Perm()
	}
	if t.Perms != "" {
		m, err := t.FileMode()
		if err != nil {
			return 0, fileOwner{}, err
		}
		mode = m
	}
	owner, err := ownerOf(t)
	if err != nil {
		return 0, owner, err
	}
	if current != nil {
		if st, ok := current.Sys().(*syscall.Stat_t); ok {
			root := os.Geteuid() == 0
			if owner.uid < 0 && root {
				owner.uid = int(st.Uid)
			}
			if owner.gid < 0 && (root || memberOf(int(st.Gid))) {
				// A process that is not root may give a file a group
				// of its own: the file's (nginx's, for a 0640 file)
				// is kept.
				owner.gid = int(st.Gid)
			}
		}
	}
	return mode, owner, nil
}

// memberOf reports whether the process is in group gid: its own, or one
// of its supplementary groups.
func memberOf(gid int) bool {
	if gid == os.Getegid() {
		return true
	}
	groups, err := os.Getgroups()
	return err == nil && slices.Contains(groups, gid)
}

// attrsDiffer reports whether an existing destination's mode or owner
// differs from what the template asks for (perms, user, group), so that a
// changed perms is applied without waiting for the content to change.
func attrsDiffer(t TemplateConfig, current fs.FileInfo) bool {
	if t.Perms == "" && t.User == "" && t.Group == "" {
		return false
	}
	mode, owner, err := destinationMode(t, current)
	if err != nil {
		return true // the install step reports it
	}
	if current.Mode().Perm() != mode {
		return true
	}
	uid, gid := owner.changes(current)
	return uid >= 0 || gid >= 0
}

// changes returns the uid and gid of o that a file with info does not
// have yet, each -1 if it has it or o leaves it as it is (as Chown takes
// them); both -1 where info tells no owner.
func (o fileOwner) changes(info fs.FileInfo) (uid, gid int) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1
	}
	uid, gid = -1, -1
	if o.uid >= 0 && uint32(o.uid) != st.Uid {
		uid = o.uid
	}
	if o.gid >= 0 && uint32(o.gid) != st.Gid {
		gid = o.gid
	}
	return uid, gid
}

// install moves a staged file over dest atomically and syncs the directory.
// When dest cannot be replaced by rename — a file bind-mounted into a
// container answers EBUSY, another filesystem EXDEV — it falls back to
// rewriting dest in place, which is not atomic, with mode and owner (see
// rewrite). It reports whether it fell back, and whether dest holds
// something else than before when it fails: the staged file renamed over
// it, of which the directory could not be synced, or a rewrite that
// failed and could not put the file's content back.
func install(staged, dest string, mode os.FileMode, owner fileOwner) (inPlace, changed bool, err error) {
	err = os.Rename(staged, dest)
	if err == nil {
		if err := fsync.Dir(filepath.Dir(dest)); err != nil {
			return false, true, err
		}
		return false, false, nil
	}
	if !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.EXDEV) {
		return false, false, err
	}
	defer os.Remove(staged)
	if changed, werr := rewrite(staged, dest, mode, owner); werr != nil {
		return true, changed, fmt.Errorf("rename failed (%v), and so did rewriting in place: %w", err, werr)
	}
	return true, false, nil
}

// rewrite writes the staged file's content into dest, and gives dest
// mode and owner (destinationMode's: the template's perms, user and group)
// first, so that content meant for fewer readers is never in a file more
// may read. A mode or owner it cannot give fails the rewrite before
// anything is written. When the write fails (a full file system), the
// file's content, mode and owner are put back, and the error says
// whether they could be; changed reports that they could not.
func rewrite(staged, dest string, mode os.FileMode, owner fileOwner) (changed bool, err error) {
	data, err := os.ReadFile(staged)
	if err != nil {
		return false, err
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	have, err := f.Stat()
	if err != nil {
		return false, err
	}
	// What to put back; a file the renderer may write but not read has
	// none, and a failed write leaves it partial.
	old, readErr := readNoFollow(dest)
	undo := rewriteUndo{f: f, have: have, old: old, readable: readErr == nil}
	undo.uid, undo.gid = owner.changes(have)
	if undo.uid >= 0 || undo.gid >= 0 {
		if err := f.Chown(undo.uid, undo.gid); err != nil {
			return false, err
		}
	}
	if have.Mode().Perm() != mode.Perm() {
		if err := f.Chmod(mode.Perm()); err != nil {
			return undo.put(false, err)
		}
		undo.chmod = true
	}
	if err := f.Truncate(0); err != nil {
		return undo.put(true, err)
	}
	if _, err := f.Write(data); err != nil {
		return undo.put(true, err)
	}
	if err := f.Sync(); err != nil {
		return undo.put(true, err)
	}
	return false, f.Close()
}

// rewriteUndo is what a rewrite of f changed: its owner (uid, gid, -1 if
// not), its mode (chmod); have is f as it was, old its content if it
// could be read (readable).
type rewriteUndo struct {
	f               *os.File
	have            fs.FileInfo
	uid, gid        int
	chmod, readable bool
	old             []byte
}

// put puts f back after the rewrite failed with err, its content too if
// touched (truncated, perhaps written), and returns err saying how that
// went, and whether f holds something else than before.
func (u rewriteUndo) put(touched bool, err error) (changed bool, _ error) {
	// Mode and owner first: the old content is never in a file that more
	// may read than it had.
	var failed error
	if u.chmod {
		failed = u.f.Chmod(u.have.Mode().Perm())
	}
	if st, ok := u.have.Sys().(*syscall.Stat_t); ok && (u.uid >= 0 || u.gid >= 0) {
		failed = errors.Join(failed, u.f.Chown(int(st.Uid), int(st.Gid)))
	}
	if touched && u.readable {
		if terr := u.f.Truncate(0); terr != nil {
			failed = errors.Join(failed, terr)
		} else if _, werr := u.f.WriteAt(u.old, 0); werr != nil {
			failed = errors.Join(failed, werr)
		} else {
			failed = errors.Join(failed, u.f.Sync())
		}
	}
	switch {
	case touched && !u.readable:
		return true, fmt.Errorf("%w; the file could not be read before, so it is left partial", err)
	case touched && failed != nil:
		return true, fmt.Errorf("%w; putting its previous content back failed too (%v), so it is left partial", err, failed)
	case touched:
		return false, fmt.Errorf("%w; its previous content was put back", err)
	case failed != nil:
		return false, fmt.Errorf("%w; putting its mode and owner back failed too (%v)", err, failed)
	}
	return false, err
}

// readNoFollow reads the file at path, refusing a symbolic link.
func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// relink puts the symbolic link dest -> target back in place of the file
// that replaced it (a restore), by rename.
func relink(dest, target string) error {
	staged := stagedName(dest)
	os.Remove(staged)
	if err := os.Symlink(target, staged); err != nil {
		return err
	}
	if err := os.Rename(staged, dest); err != nil {
		os.Remove(staged)
		return err
	}
	return fsync.Dir(filepath.Dir(dest))
}

// replace writes data over dest the way a render does: staged, synced,
// renamed. Used to restore a previous file and to write backups.
func replace(dest string, data []byte, mode os.FileMode, owner fileOwner) error {
	staged := stagedName(dest)
	if err := writeStaged(staged, data, mode, owner); err != nil {
		os.Remove(staged)
		return err
	}
	if _, _, err := install(staged, dest, mode, owner); err != nil {
		os.Remove(staged)
		return err
	}
	return nil
}

// destinationDir makes sure a destination's directory exists: with
// create_dest_dirs it creates it (0755 whatever the umask, as files get
// their mode whatever it is; parents too), else a missing one is an error
// that says what to do.
func destinationDir(t TemplateConfig) error {
	dir := filepath.Dir(t.Destination)
	info, err := os.Stat(dir)
	switch {
	case err == nil && !info.IsDir():
		return fmt.Errorf("destination directory %s is not a directory", dir)
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("destination directory: %w", err)
	case !t.CreateDestDirs:
		return fmt.Errorf("destination directory %s does not exist (create it, or set create_dest_dirs = true)", dir)
	}
	if err := fsync.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create destination directory: %w", err)
	}
	return nil
}
