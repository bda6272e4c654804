// Package testprog finds the real programs the end-to-end tests run
// against (nginx, HAProxy, chromium): without one, a test is skipped,
// saying which program it needs and how to get it; in CI (CI set, as
// .ci/run sets it) it fails instead, so CI never skips those tests. It also
// builds the tests' own helper programs (Build) and sets up test binaries
// whose tests wait on child processes (ChildProcessTests).
package testprog

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Find returns the path of the program name, looked up in PATH and the
// sbin directories. why says what the test needs it for and how to
// install it.
func Find(t testing.TB, name, why string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	SkipOrFail(t, fmt.Sprintf("%s needs %s, which is not installed: %s", t.Name(), name, why), "")
	return ""
}

// sbinDirs are where Find looks for a program not in PATH: Debian
// installs nginx and haproxy into /usr/sbin, which only root's PATH holds.
var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}

// pathWithSbin returns path with those of sbinDirs it lacks appended.
func pathWithSbin(path string) string {
	have := filepath.SplitList(path)
	for _, dir := range sbinDirs {
		if !slices.Contains(have, dir) {
			if path != "" {
				path += string(filepath.ListSeparator)
			}
			path += dir
		}
	}
	return path
}

// SkipOrFail ends a test that cannot run here, saying msg: it skips it,
// or in CI fails it, adding that CI runs every test and then ciNote (empty,
// or a word on how CI has what the test needs).
func SkipOrFail(t testing.TB, msg, ciNote string) {
	t.Helper()
	if InCI() {
		t.Fatal(msg + "; CI runs every test" + ciNote)
	}
	t.Skip(msg)
}

// NeedRoot ends a test that must run as root (to change a file's owner,
// to run a process as another user) when it does not: a skip, or in CI,
// which runs as root, a failure. why says what root is for.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, t.Name()+" needs root, "+why, " (as root)")
	}
}

// InCI reports whether the tests run in CI: CI is set, and not to false.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}

// NginxTempPaths are the directives of an http block that keep nginx's
// temporary directories in dir. nginx, run as root (as the tests are in
// CI), makes its compiled-in ones (/var/lib/nginx/body, ...) its user's,
// nobody for a config without a user directive: the machine's own nginx
// could then not buffer to them until its next reload. A module nginx was
// built without has no such directive.
func NginxTempPaths(t testing.TB, bin, dir string) string {
	t.Helper()
	v := nginxBuild(t, bin)
	var b strings.Builder
	for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if !strings.Contains(v, "--without-http_"+p+"_module") {
			fmt.Fprintf(&b, "    %s_temp_path %s;\n", p, filepath.Join(dir, p))
		}
	}
	return b.String()
}

// NginxTempParents are the existing directories nginx, as built, makes
// its temporary directories in when a config keeps them where they were
// compiled in (/var/lib/nginx on Debian): its --http-*-temp-path options.
func NginxTempParents(t testing.TB, bin string) []string {
	t.Helper()
	var dirs []string
	for _, f := range strings.Fields(nginxBuild(t, bin)) {
		if name, dir, ok := strings.Cut(f, "="); ok && strings.HasSuffix(name, "-temp-path") && filepath.IsAbs(dir) {
			if _, err := os.Stat(filepath.Dir(dir)); err == nil && !slices.Contains(dirs, filepath.Dir(dir)) {
				dirs = append(dirs, filepath.Dir(dir))
			}
		}
	}
	return dirs
}

// nginxBuild is what nginx -V tells of how bin was built.
func nginxBuild(t testing.TB, bin string) string {
	t.Helper()
	v, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -V: %v: %s", bin, err, v)
	}
	return string(v)
}
