package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svcreg/svcreg/internal/testprog"
	"github.com/svcreg/svcreg/internal/testserver"
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
		// Every flag before --help is checked; after an argument --help is
		// a mistake of its own (the flags before it are good).
		args := append(strings.Fields(line)[1:], "--help")
		var stderr strings.Builder
		code := Main(context.Background(), args, strings.NewReader(""), io.Discard, &stderr)
		if code != exitOK && (code != exitUsage || !strings.Contains(stderr.String(), "--help after an argument")) {
			t.Errorf("README: %q: exit status %d with --help appended (%s); is the command or a flag misspelled?", line, code, strings.TrimSpace(stderr.String()))
		}
	}
	if n < 10 {
		t.Errorf("README's command-line block shows %d svcreg commands; the test reads the wrong block", n)
	}
}

// The README's Go client example and its command-line examples sign in
// as the same user (the same tenant), so each sees the other's services.
func TestREADMEExamplesShareAnAccount(t *testing.T) {
	t.Parallel()
	goUser := regexp.MustCompile(`Username: "([^"]+)"`).FindStringSubmatch(strings.Join(readmeBlock(t, "## Using the Go client", "go"), "\n"))
	cliUser := regexp.MustCompile(`SVCREG_USERNAME=(\S+)`).FindStringSubmatch(strings.Join(readmeBlock(t, "## Command line", "sh"), "\n"))
	if goUser == nil || cliUser == nil || goUser[1] != cliUser[1] {
		t.Fatalf("the Go client example signs in as %q, the command-line examples as %q", goUser, cliUser)
	}
}

// The README's wrapper example, run as written (with the test's registry
// and a free port): the listing shows the wrapped service.
func TestREADMEWrapperExample(t *testing.T) {
	t.Parallel()
	program(t, "python3")
	// The programs as a user builds them (go build, no -race): built once
	// and kept by testprog, not linked again on every run.
	var path []string
	for _, dir := range []string{".", "../service-registry-wrapper"} {
		src, err := testprog.SourceDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := testprog.Build(src)
		if err != nil {
			t.Fatal(err)
		}
		path = append(path, filepath.Dir(prog))
	}
	srv := testserver.Start(t, testserver.Options{})
	port := strconv.Itoa(freePort(t))
	script := strings.Join(readmeBlock(t, "## Wrapping a process: service-registry-wrapper and svcreg wrap", "sh"), "\n")
	script = strings.NewReplacer("http://127.0.0.1:8420/v1.0", srv.APIURL, "8000", port).Replace(script) + "\nwait $wrapper\n"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // stops a broken test only
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+strings.Join(append(path, os.Getenv("PATH")), ":"))
	out, _ := cmd.CombinedOutput()
	if !regexp.MustCompile(`(?m)^http-` + port + `\s+www\s`).Match(out) {
		t.Fatalf("the listing lacks the wrapped service:\n%s", out)
	}
}

// The README's configuration reference is a config svcreg template takes:
// every key it shows exists and every value is valid.
func TestREADMEConfigurationReference(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "render.toml")
	if err := os.WriteFile(path, []byte(strings.Join(readmeBlock(t, "### Configuration", "toml"), "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadTemplateConfig(path)
	if err != nil {
		t.Fatalf("the README's configuration reference: %v", err)
	}
	if len(c.Templates) != 2 || c.Templates[1].Contents == "" || len(c.FunctionDenylist) == 0 || c.Registry.URL == "" {
		t.Fatalf("read the wrong block? %+v", c)
	}
}
