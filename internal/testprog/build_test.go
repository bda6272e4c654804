package testprog

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeProgram(t *testing.T, main string) string {
	t.Helper()
	dir := t.TempDir()
	writeSources(t, dir, main)
	t.Cleanup(func() { os.RemoveAll(buildDir(dir)) })
	return dir
}

// writeSources writes a module whose main package is main into dir.
func writeSources(t *testing.T, dir, main string) {
	t.Helper()
	for name, text := range map[string]string{
		"go.mod":  "module example.com/hello\n\ngo 1.22\n",
		"main.go": main,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBuild(t *testing.T) {
	dir := writeProgram(t, "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n")
	bin, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin).Output()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("the built program: %q, %v", out, err)
	}
	again, err := Build(dir)
	if err != nil || again != bin {
		t.Fatalf("built again: %q, %v; want %q", again, err, bin)
	}
}

func TestBuildFails(t *testing.T) {
	dir := writeProgram(t, "package main\n\nfunc main() { undefined() }\n")
	_, err := Build(dir)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "undefined") {
		t.Fatalf("Build of a program that does not compile: %v; want an error naming the directory and the compiler's message", err)
	}
}

// TestBuildPrunesGoneSources: the program of a source directory that is
// gone (a deleted checkout's) is removed by the next Build; one whose
// source is there stays.
func TestBuildPrunesGoneSources(t *testing.T) {
	const hello = "package main\n\nfunc main() {}\n"
	gone, kept := writeProgram(t, hello), writeProgram(t, hello)
	for _, dir := range []string{gone, kept} {
		if _, err := Build(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(writeProgram(t, hello)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(buildDir(gone), filepath.Base(gone))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the program of a deleted source directory is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(buildDir(gone), lockFile)); err != nil {
		t.Errorf("the lock file of a pruned directory was removed (a Build may be waiting on it): %v", err)
	}
	// The same source directory back (a workspace cloned again at its
	// path): built there again.
	if err := os.MkdirAll(gone, 0o700); err != nil {
		t.Fatal(err)
	}
	writeSources(t, gone, hello)
	if bin, err := Build(gone); err != nil || !fileExists(bin) {
		t.Errorf("Build of a source directory that came back: %q, %v", bin, err)
	}
	if _, err := os.Stat(filepath.Join(buildDir(kept), filepath.Base(kept))); err != nil {
		t.Errorf("the program of a source directory that is there was removed: %v", err)
	}
}

// TestSourceDir: the caller's directory, also in a binary built with
// -trimpath, which names a source file by its package's import path (go
// test runs a package's tests in its directory).
func TestSourceDir(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(wd, "loadclients")
	if got, err := SourceDir("loadclients"); err != nil || got != want {
		t.Errorf("SourceDir: %q, %v; want %q", got, err, want)
	}
	if got, err := sourceDir("github.com/svcreg/svcreg/internal/testprog/build_test.go", "loadclients"); err != nil || got != want {
		t.Errorf("sourceDir of a -trimpath file name: %q, %v; want %q", got, err, want)
	}
	if _, err := sourceDir("example.com/nowhere/x.go"); err == nil || !strings.Contains(err.Error(), "example.com/nowhere") {
		t.Errorf("sourceDir of a package go list cannot find: %v, want an error naming it", err)
	}
}
