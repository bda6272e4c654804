package render

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/svcreg/svcreg/internal/testprog"
)

// A destination bind-mounted into a container cannot be replaced by
// rename (EBUSY), so it is rewritten in place: with the template's perms,
// user and group, given before the content, which may be a secret. Before,
// it kept its old mode (a 0600 file stayed 0644), and since its mode never
// matched, every pass installed and reloaded again.
func TestInPlaceInstallGivesPermsAndOwner(t *testing.T) {
	t.Parallel()
	g := newGroup(t, `secret {{ configOr "/lb/name" "x" }}`+"\n")
	src := filepath.Join(g.dir, "host-file")
	if err := os.WriteFile(src, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.dest, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bindMount(t, src, g.dest)
	const nobody = 65534
	set := g.set(t, TemplateConfig{Perms: "0600", User: "65534", Reload: "echo reload >> " + g.log})
	ctx := context.Background()
	res := g.r.Pass(ctx, set, snapshot())
	if res.Installed != 1 || res.Failures != nil {
		t.Fatalf("pass: %+v", res)
	}
	if got := readFile(t, src); got != "secret front\n" {
		t.Fatalf("the mounted file holds %q", got)
	}
	fi, err := os.Stat(g.dest)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want the template's 0600", fi.Mode().Perm())
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != nobody {
		t.Errorf("owner %d, want the template's %d", uid, nobody)
	}
	for range 2 {
		if res := g.r.Pass(ctx, set, snapshot()); res.Installed != 0 || res.Failures != nil {
			t.Errorf("a pass with nothing changed: %+v", res)
		}
	}
	if n := g.reloads(t); n != 1 {
		t.Errorf("%d reloads for one change", n)
	}
}

// bindMount mounts the file src over dest until the test ends. It needs
// root; elsewhere the test is skipped, but not in CI.
func bindMount(t *testing.T, src, dest string) {
	t.Helper()
	err := syscall.Mount(src, dest, "", syscall.MS_BIND, "")
	if err != nil {
		msg := "bind-mounting a file needs root (CAP_SYS_ADMIN): " + err.Error()
		if os.Geteuid() == 0 || testprog.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dest, 0); err != nil {
			t.Errorf("unmount %s: %v", dest, err)
		}
	})
}
