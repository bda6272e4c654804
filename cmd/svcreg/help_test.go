package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// commandHelp is a command's --help output.
func commandHelp(t *testing.T, args ...string) string {
	t.Helper()
	var stdout strings.Builder
	if code := Main(context.Background(), append(args, "--help"), strings.NewReader(""), &stdout, io.Discard); code != exitOK {
		t.Fatalf("%s --help: exit status %d", strings.Join(args, " "), code)
	}
	return stdout.String()
}

// --dev's help says what statuspage.AddressedOnly serves: names without a
// dot too, whatever address the request reached, not only on loopback.
func TestDevFlagHelpNamesTheHostsItServes(t *testing.T) {
	help := commandHelp(t, "server")
	_, dev, ok := strings.Cut(help, "\n  --dev\n")
	if !ok {
		t.Fatalf("server --help lists no --dev:\n%s", help)
	}
	dev, _, _ = strings.Cut(dev, "\n  --")
	dev = strings.Join(strings.Fields(dev), " ")
	if !strings.Contains(dev, "a name without a dot") || !strings.Contains(dev, "421") || strings.Contains(dev, "loopback") {
		t.Errorf("server --help's --dev: %q; want the names it serves (a name without a dot too) on any address, and 421 for others", dev)
	}
}

// --config and --template go together, the flags' templates after the
// file's; the usage line does not show them as alternatives.
func TestTemplateTakesConfigAndTemplateFlagsTogether(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "render.toml")
	if err := os.WriteFile(config, []byte("[[template]]\nsource = \"a.tmpl\"\ndestination = \"a.out\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := templateFlags{config: config, templates: stringList{"b.tmpl:" + filepath.Join(dir, "b.out")}}
	c, err := f.loadConfig(flag.NewFlagSet("template", flag.ContinueOnError))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Templates) != 2 || filepath.Base(c.Templates[0].Source) != "a.tmpl" || filepath.Base(c.Templates[1].Source) != "b.tmpl" {
		t.Fatalf("templates %+v; want the file's, then the flag's", c.Templates)
	}
	help := commandHelp(t, "template")
	usage, _, _ := strings.Cut(strings.TrimPrefix(help, "Usage:\n"), "\n\n")
	if strings.Contains(usage, "|") || !strings.Contains(usage, "[--config FILE]") || !strings.Contains(help, "or from both") {
		t.Errorf("template --help shows --config and --template as alternatives:\n%s", usage)
	}
}

// --version is the version command, as many tools take it; the usage
// says so, and names help.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var stdout, stderr strings.Builder
		if code := Main(context.Background(), args, nil, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "svcreg ") {
			t.Errorf("svcreg %s: exit %d, %q %q; want the version", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr strings.Builder
	if code := Main(context.Background(), []string{"--version", "x"}, nil, &stdout, &stderr); code != exitUsage {
		t.Errorf("svcreg --version x: exit %d, want %d", code, exitUsage)
	}
	stdout.Reset()
	Main(context.Background(), []string{"--help"}, nil, &stdout, &stderr)
	if !strings.Contains(stdout.String(), "svcreg help <command>") || !strings.Contains(stdout.String(), "--version") {
		t.Errorf("the usage does not name help and --version:\n%s", stdout.String())
	}
}
