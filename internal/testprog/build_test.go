package testprog

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeProgram(t *testing.T, main string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":  "module example.com/hello\n\ngo 1.22\n",
		"main.go": main,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(buildDir(dir)) })
	return dir
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
