package render

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	const nobody, users = 65534, 100
	set := g.set(t, TemplateConfig{Perms: "0600", User: "65534", Group: "100", Reload: "echo reload >> " + g.log})
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
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody || st.Gid != users {
		t.Errorf("owner %d:%d, want the template's %d:%d", st.Uid, st.Gid, nobody, users)
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
// CAP_SYS_ADMIN (root, outside a default container); without it the test
// is skipped, but not in CI.
func bindMount(t *testing.T, src, dest string) {
	t.Helper()
	err := syscall.Mount(src, dest, "", syscall.MS_BIND, "")
	if err != nil {
		msg := "bind-mounting a file needs CAP_SYS_ADMIN: " + err.Error()
		testprog.SkipOrFail(t, msg, "")
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dest, 0); err != nil {
			t.Errorf("unmount %s: %v", dest, err)
		}
	})
}

// A process that is not root gives a destination rewritten in place the
// template's group, one of its own; its user it cannot give, and that
// fails the rewrite before anything is written.
func TestRewriteAsNonRootGivesTheGroup(t *testing.T) {
	t.Parallel()
	if dir, ok := asNonRoot(t); ok {
		rewriteAsNonRoot(t, dir)
	}
}

// asNonRoot returns the directory for a test's part that runs as a user
// that is not root, and true, when the test runs so; as root, it runs the
// test again as nobody, in nobody's group and users (100), and returns
// false (the test is done).
func asNonRoot(t *testing.T) (string, bool) {
	if d := os.Getenv("SVCREG_NONROOT_DIR"); d != "" {
		return d, true
	}
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		return dir, true
	}
	// In dir (t.TempDir makes it and its parent root's alone).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary's own directory is root's alone.
	bin := filepath.Join(dir, "render.test")
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), "SVCREG_NONROOT_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534, 100}}}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	return "", false
}

// otherGroup is a group of the process other than its own, for a test
// that runs as a user that is not root.
func otherGroup(t *testing.T) int {
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if g != os.Getgid() {
			return g
		}
	}
	msg := "the user is in one group only: no other group to give"
	testprog.SkipOrFail(t, msg, " (as root, which runs it as nobody in two groups)")
	return -1
}

// A renderer that is not root, replacing a file of one of its groups
// other than its own (nginx's, say, mode 0640), keeps that group. Before,
// only root kept the file's owner: the new file had the renderer's group,
// and the group's readers lost the file at the next reload.
func TestReplaceAsNonRootKeepsTheGroup(t *testing.T) {
	t.Parallel()
	dir, ok := asNonRoot(t)
	if !ok {
		return
	}
	other := otherGroup(t)
	g := &group{dir: dir, src: writeFile(t, dir, "t.tmpl", upstreams), dest: filepath.Join(dir, "out.conf"),
		log: filepath.Join(dir, "reloads"), r: NewRenderer(nil, nil, nil)}
	writeFile(t, dir, "out.conf", "before\n")
	if err := os.Chown(g.dest, -1, other); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(g.dest, 0o640); err != nil {
		t.Fatal(err)
	}
	set := g.set(t, TemplateConfig{})
	if res := g.r.Pass(context.Background(), set, snapshot(svc("web-1", []string{"www"}, map[string]string{"ip": "10.0.0.1"}))); res.Installed != 1 || res.Failures != nil {
		t.Fatalf("pass: %+v", res)
	}
	fi, err := os.Stat(g.dest)
	if err != nil {
		t.Fatal(err)
	}
	if gid := int(fi.Sys().(*syscall.Stat_t).Gid); gid != other || fi.Mode().Perm() != 0o640 || readFile(t, g.dest) != "server 10.0.0.1;\n" {
		t.Errorf("group %d, mode %04o, content %q; want the file's group %d and 0640, and the render", gid, fi.Mode().Perm(), readFile(t, g.dest), other)
	}
}

// rewriteAsNonRoot is TestRewriteAsNonRootGivesTheGroup's part that runs
// as a user that is not root, in dir.
func rewriteAsNonRoot(t *testing.T, dir string) {
	other := otherGroup(t)
	dest, staged := filepath.Join(dir, "dest"), filepath.Join(dir, "staged")
	for _, f := range []string{dest, staged} {
		if err := os.WriteFile(f, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rewrite(staged, dest, 0o640, fileOwner{-1, other}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if gid := int(fi.Sys().(*syscall.Stat_t).Gid); gid != other || fi.Mode().Perm() != 0o640 {
		t.Errorf("group %d, mode %04o; want the template's %d and 0640", gid, fi.Mode().Perm(), other)
	}
	if got := readFile(t, dest); got != staged {
		t.Errorf("content %q, want the staged file's", got)
	}
	// A user it is not: refused, the content as it was.
	if err := os.WriteFile(staged, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rewrite(staged, dest, 0o640, fileOwner{os.Getuid() + 1, -1}); err == nil {
		t.Error("rewrite gave the file to another user, not being root")
	}
	if got := readFile(t, dest); got != staged {
		t.Errorf("content %q after a refused rewrite, want it as it was", got)
	}
}

// A rewrite in place that fails part way (a full file system; here the
// file size limit, which fails a write the same way) puts the file's
// content and mode back, and says so. Before, the file was left
// truncated to what fitted of the new render, for the next reload or
// restart of the load balancer to read.
func TestRewriteThatFailsPutsTheFileBack(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("SVCREG_REWRITE_FSIZE_DIR")
	if dir == "" {
		// The limit is the process's: the rewrite runs in a child.
		dir = t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "dest"), []byte(strings.Repeat("old\n", 250)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "staged"), []byte(strings.Repeat("new\n", 2500)), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run", "^TestRewriteThatFailsPutsTheFileBack$", "-test.v")
		cmd.Env = append(os.Environ(), "SVCREG_REWRITE_FSIZE_DIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: TestRewriteThatFailsPutsTheFileBack") {
			t.Fatalf("the child: %v\n%s", err, out)
		}
		return
	}
	// 4 KiB: the old content (1000 bytes) fits, the new (10000) does not.
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 4096, Max: 4096}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "dest")
	changed, err := rewrite(filepath.Join(dir, "staged"), dest, 0o644, fileOwner{-1, -1})
	if err == nil || !strings.Contains(err.Error(), "file too large; its previous content was put back") || changed {
		t.Fatalf("rewrite past the limit: changed %v, %v; want it failed and the content put back", changed, err)
	}
	if got := readFile(t, dest); got != strings.Repeat("old\n", 250) {
		t.Errorf("the destination holds %d bytes (%.20q…), want its previous content", len(got), got)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the destination's mode: %v, %v; want 0600 as before", fi.Mode(), err)
	}
}
