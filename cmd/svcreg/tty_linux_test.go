package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/svcreg/svcreg/internal/testserver"
)

// config get writes a value as stored when piped, and quoted, escapes
// and all, on a terminal: anyone who can write the account's
// configuration chooses what it holds.
func TestConfigGetOnATerminal(t *testing.T) {
	t.Parallel()
	srv, c := tailEnv(t, "config-tty")
	ctx := context.Background()
	// The text \x1b after the escape sequence must not read as a second one.
	if err := c.SetConfig(ctx, "hostile.key", "\x1b[2Jvalue\\x1b"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(ctx, "plain.key", `C:\dir`); err != nil {
		t.Fatal(err)
	}
	pty, tty := openPTY(t)
	get := func(key string) string {
		var stderr bytes.Buffer
		if code := Main(ctx, []string{"config", "get", key, "--url", srv.APIURL, "--username", "config-tty", "--api-key", "dev"}, strings.NewReader(""), tty, &stderr); code != 0 {
			t.Fatalf("config get on a terminal: exit %d, %s", code, stderr.String())
		}
		return stderr.String()
	}
	hostileNote, plainNote := get("hostile.key"), get("plain.key")
	tty.Close()
	shown, _ := io.ReadAll(pty)
	if want := "\\x1b[2Jvalue\\\\x1b\r\nC:\\dir\r\n"; string(shown) != want {
		t.Errorf("config get on a terminal shows %q; want %q: the escape sequence as an escape, a backslash doubled only in the value that has one", shown, want)
	}
	if !strings.Contains(hostileNote, "shown escaped") || plainNote != "" {
		t.Errorf("standard error %q for the escaped value, %q for the plain one; want a note for the first only", hostileNote, plainNote)
	}
}

// template --print shows on a terminal what a template rendered from
// registry data, with escapes for what would drive the terminal, and
// writes it as rendered when piped.
func TestTemplatePrintOnATerminal(t *testing.T) {
	t.Parallel()
	srv, c, _ := registryEnv(t, testserver.Options{}, "print-tty")
	createService(t, c, "web-1", 120, nil, map[string]string{"note": "\x1b]0;owned\a\x1b[2J"})
	tmpl := filepath.Join(t.TempDir(), "raw.tmpl")
	if err := os.WriteFile(tmpl, []byte(`{{range services}}{{.ID}} {{index .Metadata "note"}}{{end}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	print := func(stdout io.Writer) string {
		var stderr bytes.Buffer
		if code := Main(context.Background(), []string{"template", "--print", "--template", tmpl + ":" + tmpl + ".out",
			"--url", srv.APIURL, "--username", "print-tty", "--api-key", "dev"}, nil, stdout, &stderr); code != 0 {
			t.Fatalf("template --print: exit %d, %s", code, stderr.String())
		}
		return stderr.String()
	}
	pty, tty := openPTY(t)
	note := print(tty)
	tty.Close()
	shown, _ := io.ReadAll(pty)
	if want := `web-1 \x1b]0;owned\a\x1b[2J` + "\r\n"; !strings.HasSuffix(string(shown), want) {
		t.Errorf("template --print on a terminal shows %q; want it to end in %q", shown, want)
	}
	if !strings.Contains(note, "shown escaped") {
		t.Errorf("standard error %q; want a note that the output is shown escaped", note)
	}
	var piped bytes.Buffer
	print(&piped)
	if want := "web-1 \x1b]0;owned\a\x1b[2J\n"; !strings.HasSuffix(piped.String(), want) {
		t.Errorf("template --print, piped: %q; want it to end in %q, as rendered", piped.String(), want)
	}
}

// openPTY opens a pseudo-terminal: what is written to tty is read from
// pty (with the terminal's line discipline: "\n" becomes "\r\n").
func openPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { pty.Close() })
	if err := unix.IoctlSetPointerInt(int(pty.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(pty.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return pty, tty
}
