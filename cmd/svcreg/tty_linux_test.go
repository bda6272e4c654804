package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// config get writes a value as stored when piped, and quoted, escapes
// and all, on a terminal: anyone who can write the account's
// configuration chooses what it holds.
func TestConfigGetOnATerminal(t *testing.T) {
	t.Parallel()
	srv, c := tailEnv(t, "config-tty")
	ctx := context.Background()
	if err := c.SetConfig(ctx, "hostile.key", "\x1b[2Jvalue"); err != nil {
		t.Fatal(err)
	}
	pty, tty := openPTY(t)
	var stderr bytes.Buffer
	if code := Main(ctx, []string{"config", "get", "hostile.key", "--url", srv.APIURL, "--username", "config-tty", "--api-key", "dev"}, strings.NewReader(""), tty, &stderr); code != 0 {
		t.Fatalf("config get on a terminal: exit %d, %s", code, stderr.String())
	}
	tty.Close()
	shown, _ := io.ReadAll(pty)
	if strings.Contains(string(shown), "\x1b") || !strings.Contains(string(shown), `\x1b[2Jvalue`) {
		t.Errorf("config get on a terminal shows %q; want the escape sequence as an escape", shown)
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
