package render

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// The staged file's name is predictable and its directory may be writable
// by a less trusted user: a symlink planted there must not make the
// renderer truncate, write, chmod or chown the file it points to.
func TestStagedFileDoesNotFollowSymlinks(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "x\n")
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, stagedName(g.dest)); err != nil {
		t.Fatal(err)
	}
	set := g.set(t, TemplateConfig{Perms: "0644", Backup: true})
	if res := g.r.Pass(context.Background(), set, snapshot()); res.Installed != 1 || res.Failures != nil {
		t.Fatalf("pass: %+v", res)
	}
	if got := readFile(t, victim); got != "secret\n" {
		t.Errorf("the symlink's target was written: %q", got)
	}
	if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the symlink's target was chmod'ed: %v %v", fi.Mode(), err)
	}
	if got := readFile(t, g.dest); got != "x\n" {
		t.Errorf("destination %q", got)
	}
	// The backup is staged the same way.
	if err := os.Symlink(victim, stagedName(g.dest+".bak")); err != nil {
		t.Fatal(err)
	}
	set = g.set(t, TemplateConfig{Perms: "0640", Backup: true})
	if res := g.r.Pass(context.Background(), set, snapshot()); res.Failures != nil {
		t.Fatalf("pass: %+v", res)
	}
	if got := readFile(t, victim); got != "secret\n" {
		t.Errorf("the symlink's target was written by the backup: %q", got)
	}
}

// A backup, and a restore after a failed reload, write the old content
// with the old file's mode: not the template's new perms, which may let
// more users read what was meant for fewer (a file that was 0600).
func TestOldContentKeepsItsMode(t *testing.T) {
	t.Parallel()
	g := newGroup(t, "public\n")
	writeFile(t, g.dir, filepath.Base(g.dest), "secret\n")
	if err := os.Chmod(g.dest, 0o600); err != nil {
		t.Fatal(err)
	}
	set := g.set(t, TemplateConfig{Perms: "0644", Backup: true, Reload: "exit 1"})
	res := g.r.Pass(context.Background(), set, snapshot())
	if w := res.Worst(); w == nil || w.Step != StepReload {
		t.Fatalf("pass: %+v, want the reload to fail", res)
	}
	for _, path := range []string{g.dest, g.dest + ".bak"} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, path); got != "secret\n" || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %q, mode %04o; want the old content with its mode, 0600", filepath.Base(path), got, fi.Mode().Perm())
		}
	}
}
