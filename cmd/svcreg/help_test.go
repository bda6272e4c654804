package main

import (
	"context"
	"io"
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
