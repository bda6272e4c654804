package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/svcreg/svcreg/internal/fsync"
)

// The spellings a template keeps (spellings.go) are saved in the
// Renderer's StateDir, one file a destination, so that a renderer started
// anew, or a --once run, keeps the spelling the one before it kept: else
// a service registered as "api" would only have to wait for a restart to
// take the name "API", and its traffic.

// maxStateFile bounds what is read of a state file; a template's file
// holds at most maxSavedSpellings names and maxSavedBytes.
const maxStateFile = 16 << 20

// stateFile is the content of a state file.
type stateFile struct {
	// Destination is the template's, to tell the file apart from one of
	// another destination should two names collide.
	Destination string       `json:"destination"`
	Spellings   []savedSpell `json:"spellings"`
}

// savedSpell is one remembered spelling (see spelling), with its
// metadata key.
type savedSpell struct {
	Key    string    `json:"key"`
	Name   string    `json:"name"`
	Absent time.Time `json:"absent,omitzero"`
	Seen   time.Time `json:"seen,omitzero"`
	Since  time.Time `json:"since,omitzero"`
	Rival  bool      `json:"rival,omitzero"`
}

// stateDest is dest as a state file names it: absolute and clean, so
// that conf.d/./a.conf finds the file of conf.d/a.conf.
func stateDest(dest string) string {
	if abs, err := filepath.Abs(dest); err == nil {
		return abs
	}
	return filepath.Clean(dest)
}

// statePath is the file in dir of the template rendering to dest.
func statePath(dir, dest string) string {
	sum := sha256.Sum256([]byte(stateDest(dest)))
	return filepath.Join(dir, "spellings-"+hex.EncodeToString(sum[:8])+".json")
}

// encodeSpellings returns s as saved, in a stable order.
func encodeSpellings(s spellings) []savedSpell {
	keys := slices.Sorted(maps.Keys(s))
	saved := make([]savedSpell, len(keys))
	for i, k := range keys {
		key, _, _ := strings.Cut(k, "\x00")
		sp := s[k]
		saved[i] = savedSpell{Key: key, Name: sp.name, Absent: sp.absent.UTC(), Seen: sp.seen.UTC(), Since: sp.since.UTC(), Rival: sp.rival}
	}
	return saved
}

// persists reports whether a remembered spelling is saved: one that a
// renderer started without it would choose anyway (all lowercase, served,
// never beside another spelling) is not, so that the file holds the few
// names that need it.
func persists(sp spelling) bool {
	return sp.contested() || sp.name != strings.ToLower(sp.name)
}

// contested reports whether the name was ever beside another spelling, or
// is waiting out its grace.
func (sp spelling) contested() bool { return sp.rival || !sp.absent.IsZero() }

// persisted is what of s is saved: the contested names first, then those
// seen last, then those served since the earliest, up to
// maxSavedSpellings names and maxSavedBytes of them (a reader refuses a
// file past maxStateFile; a template may remember more: the names its
// renders see, and those seen lately).
func persisted(s spellings) spellings {
	var ks []string
	for k, sp := range s {
		if persists(sp) {
			ks = append(ks, k)
		}
	}
	if overSaveCaps(s) {
		slices.SortFunc(ks, func(a, b string) int {
			x, y := s[a], s[b]
			if cx, cy := x.contested(), y.contested(); cx != cy {
				if cx {
					return -1
				}
				return 1
			}
			if c := y.seen.Compare(x.seen); c != 0 {
				return c
			}
			return x.since.Compare(y.since)
		})
		n, size, z := 0, 0, sizer{}
		for n < len(ks) && n < maxSavedSpellings {
			if size += z.size(ks[n], s[ks[n]]); size > maxSavedBytes {
				break
			}
			n++
		}
		ks = ks[:n]
	}
	keep := make(spellings, len(ks))
	for _, k := range ks {
		keep[k] = s[k]
	}
	return keep
}

// overSaveCaps reports whether the names of s that persist take more
// than a state file holds (persisted cuts them).
func overSaveCaps(s spellings) bool {
	n, size, z := 0, 0, sizer{}
	for k, sp := range s {
		if persists(sp) {
			n++
			size += z.size(k, sp)
		}
	}
	return n > maxSavedSpellings || size > maxSavedBytes
}

// sizer tells about what an entry takes in a state file, at most: its
// metadata key and name as JSON strings, its times and the rest. It keeps
// the last key's size (a template has one key, or a few).
type sizer struct {
	key string
	n   int
}

func (z *sizer) size(k string, sp spelling) int {
	if key, _, _ := strings.Cut(k, "\x00"); z.n == 0 || key != z.key {
		b, _ := json.Marshal(key)
		z.key, z.n = key, len(b)
	}
	return z.n + len(sp.name) + 256
}

// maxSavedSpellings and maxSavedBytes bound what a state file holds, well
// under maxStateFile.
const (
	maxSavedSpellings = 32768
	maxSavedBytes     = maxStateFile * 3 / 4
)

// urgent reports whether s, to be saved over saved, changes a choice: a
// contested name new or changed, or a saved name whose spelling or
// absence changed. Other changes (a name not contested, new or dropped;
// the times seen and first served) are written at most every
// spellingGrace/2: a registry whose names keep changing would otherwise
// have the whole file written at every pass.
func urgent(s, saved spellings) bool {
	for k, x := range s {
		y, ok := saved[k]
		switch {
		case !persists(x):
		case !ok && x.contested():
			return true
		case ok && !x.sameChoice(y):
			return true
		}
	}
	return false
}

// sameChoice reports whether sp and saved make the same choice: the same
// spelling, as contested (rival, absent since the same time).
func (sp spelling) sameChoice(saved spelling) bool {
	return sp.name == saved.name && sp.rival == saved.rival && sp.absent.Equal(saved.absent)
}

// sameChoices reports whether the spellings of s that are saved are
// saved's, as contested, with the same times of absence and first
// served, and times last seen within half of spellingGrace of the saved
// ones (they change at every render, and order what is dropped: a
// renderer started anew must not take a name served all along for one
// gone since the file was written, and serve it anew).
func sameChoices(s, saved spellings) bool {
	n := 0
	for k, x := range s {
		if !persists(x) {
			continue
		}
		n++
		y, ok := saved[k]
		if !ok || !x.sameChoice(y) || !x.since.Equal(y.since) || x.seen.Sub(y.seen) >= spellingGrace/2 {
			return false
		}
	}
	return n == len(saved)
}

// decodeSpellings reads a state file of dest. An entry that no render
// could have made (a name ident refuses) makes the whole file refused:
// the file is not what this program wrote.
func decodeSpellings(dest string, data []byte) (spellings, error) {
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Destination != stateDest(dest) {
		return nil, fmt.Errorf("it is the file of destination %q", f.Destination)
	}
	s := make(spellings, len(f.Spellings))
	for _, sp := range f.Spellings {
		if sp.Key == "" || strings.ContainsRune(sp.Key, 0) || len(sp.Key) > maxStateKey {
			return nil, fmt.Errorf("a metadata key of %d bytes, or holding a NUL", len(sp.Key))
		}
		if _, err := parseName(sp.Key, sp.Name); err != nil {
			return nil, err
		}
		if sp.Since.IsZero() { // a file written before since was kept
			sp.Since = sp.Seen
		}
		s[spellingKey(sp.Key, strings.ToLower(sp.Name))] = spelling{name: sp.Name, absent: sp.Absent, seen: sp.Seen, since: sp.Since, rival: sp.Rival}
	}
	return s, nil
}

// maxStateKey bounds a metadata key in a state file: the registry's own
// bound on a key is far below.
const maxStateKey = 1024

// loadSpellings gives t the spellings saved for its destination, if it
// has none yet (its first render in this process, or the first after a
// reload of the templates added it). A file that cannot be read is
// reported, once, and the template starts without.
func (r *Renderer) loadSpellings(t *Template) {
	if r.StateDir == "" || t.spellings.Load() != nil || !t.stateRead.CompareAndSwap(false, true) {
		return
	}
	path := statePath(r.StateDir, t.Destination)
	s, err := readStateFile(path, t.Destination)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		r.Log.Warn("the spellings this template kept before could not be read: names that differ only in case are chosen again, the all-lowercase one first; the file is written anew once a spelling needs saving",
			"template", t.Name(), "file", path, "err", err)
		return
	}
	if t.spellings.CompareAndSwap(nil, &s) {
		r.state().saved[path] = s
	}
}

// readStateFile reads the state file of dest at path: a regular file of
// this user's (not a link, not a FIFO that would hold the renderer up),
// so that in a directory others may write to, a file they put there is
// not taken.
func readStateFile(path, dest string) (spellings, error) {
	data, err := openStateFile(path, os.Geteuid())
	if err != nil {
		return nil, err
	}
	return decodeSpellings(dest, data)
}

// openStateFile reads the state file at path: a regular file (never
// through a link, nor waiting on a FIFO) of euid's, of at most
// maxStateFile bytes.
func openStateFile(path string, euid int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, errors.New("a symbolic link, not the file this program writes")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", info.Mode().Type())
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) != euid {
		return nil, fmt.Errorf("owned by uid %d, not by this user (%d), who writes it", st.Uid, euid)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStateFile)
	}
	return data, nil
}

// CopyStateFiles copies the state files in from to to, when to has none,
// as saveSpellings writes them: a state directory that moved keeps the
// spellings. A file in from that this user would not read (a link, not
// a regular file, another user's, too large) is left. It returns how
// many it copied.
func CopyStateFiles(from, to string, euid int) (int, error) {
	if have, _ := filepath.Glob(filepath.Join(to, "spellings-*.json")); len(have) > 0 {
		return 0, nil
	}
	old, _ := filepath.Glob(filepath.Join(from, "spellings-*.json"))
	copied := 0
	for _, path := range old {
		data, err := openStateFile(path, euid)
		if err != nil {
			continue
		}
		err = fsync.MkdirAll(to, 0o700)
		if err == nil {
			err = replace(filepath.Join(to, filepath.Base(path)), data, 0o600, fileOwner{-1, -1})
		}
		if err != nil {
			return copied, err
		}
		copied++
	}
	return copied, nil
}

// saveSpellings writes the state file of each of ts whose spellings
// changed since the file was last read or written: at once a change of
// what they decide (urgent), the others with the first call
// spellingGrace/2 or more after the last write. A failure is logged when
// it first happens and when it ends; the spellings stay remembered in
// memory.
func (r *Renderer) saveSpellings(ts []*Template) {
	if r.StateDir == "" || r.Dry {
		return
	}
	st := r.state()
	for _, t := range ts {
		p := t.spellings.Load()
		if p == nil {
			continue
		}
		path := statePath(r.StateDir, t.Destination)
		// Compared as it would be saved: cut only past the caps (the
		// comparisons pass over the names that do not persist).
		now := *p
		if overSaveCaps(now) {
			now = persisted(now)
		}
		if sameChoices(now, st.saved[path]) { // none saved yet: whether any needs saving
			continue
		}
		if !urgent(now, st.saved[path]) && r.now().Sub(st.written[path]) < spellingGrace/2 {
			continue
		}
		keep := persisted(now)
		data, err := json.MarshalIndent(stateFile{Destination: stateDest(t.Destination), Spellings: encodeSpellings(keep)}, "", "\t")
		if err == nil {
			err = fsync.MkdirAll(r.StateDir, 0o700)
		}
		if err == nil {
			err = replace(path, append(data, '\n'), 0o600, fileOwner{-1, -1})
		}
		switch {
		case err != nil && !st.failing[path]:
			r.Log.Warn("the spellings this template kept could not be saved: a restart would choose among names that differ only in case again, the all-lowercase one first (see --state-dir)",
				"template", t.Name(), "file", path, "err", err)
			st.failing[path] = true
		case err == nil:
			if st.failing[path] {
				r.Log.Info("the spellings this template kept are saved again", "template", t.Name(), "file", path)
				delete(st.failing, path)
			}
			st.saved[path] = keep
			st.written[path] = r.now()
		}
	}
}

// stateFiles is what a Renderer knows of the state files: by path, the
// spellings the file holds (a map stored is never changed), whether its
// saves fail (logged when they start and stop failing), and when the
// renderer last wrote it.
type stateFiles struct {
	saved   map[string]spellings
	failing map[string]bool
	written map[string]time.Time // when the renderer last wrote the file
}

func (r *Renderer) state() *stateFiles {
	if r.stateFiles.saved == nil {
		r.stateFiles = stateFiles{saved: map[string]spellings{}, failing: map[string]bool{}, written: map[string]time.Time{}}
	}
	return &r.stateFiles
}
