package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
)

// readmeBlock returns the lines of the first fenced code block of the
// given language after the README heading.
func readmeBlock(t *testing.T, heading, lang string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	_, block, ok := strings.Cut(section, "\n```"+lang+"\n")
	if !ok {
		t.Fatalf("README.md's %q section has no ```%s block", heading, lang)
	}
	block, _, _ = strings.Cut(block, "\n```\n")
	return strings.Split(block, "\n")
}

// The README's client example is the body of a real Example, which go
// test compiles and runs: the README cannot drift from a working program.
func TestREADMEClientExample(t *testing.T) {
	t.Parallel()
	snippet := readmeBlock(t, "## Using the Go client", "go")
	src, err := os.ReadFile("../../registry/example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	for i := range lines {
		if i+len(snippet) > len(lines) {
			break
		}
		match := true
		for j, l := range snippet {
			want := ""
			if l != "" {
				want = "\t" + l // an Example's body is indented once
			}
			if lines[i+j] != want {
				match = false
				break
			}
		}
		if match {
			return
		}
	}
	t.Errorf("the README's \"Using the Go client\" example is not the body of an Example in registry/example_test.go; copy it from there:\n%s", strings.Join(snippet, "\n"))
}

// Every command in the README's "Command line" examples exists and takes
// the flags it is shown with.
func TestREADMECommandLines(t *testing.T) {
	t.Parallel()
	n := 0
	for _, line := range readmeBlock(t, "## Command line", "sh") {
		if !strings.HasPrefix(line, "svcreg ") {
			continue
		}
		n++
		args := append(strings.Fields(line)[1:], "--help")
		if code := Main(context.Background(), args, strings.NewReader(""), io.Discard, io.Discard); code != exitOK {
			t.Errorf("README: %q: exit status %d with --help appended; is the command or a flag misspelled?", line, code)
		}
	}
	if n < 10 {
		t.Errorf("README's command-line block shows %d svcreg commands; the test reads the wrong block", n)
	}
}
