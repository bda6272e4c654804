package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// --hash-password prints the bcrypt hash of the password on stdin for a
// users file, and exits. Another flag beside it would do nothing (the
// server does not start): it is a usage mistake, not ignored.
func TestHashPassword(t *testing.T) {
	t.Parallel()
	var out, errs bytes.Buffer
	if code := Main(context.Background(), []string{"server", "--hash-password"}, strings.NewReader("s3cret pass\r\n"), &out, &errs); code != exitOK {
		t.Fatalf("exit %d: %s", code, &errs)
	}
	if err := bcrypt.CompareHashAndPassword(bytes.TrimSpace(out.Bytes()), []byte("s3cret pass")); err != nil {
		t.Errorf("printed %q, not a hash of the password: %v", out.String(), err)
	}
	for _, args := range [][]string{{"--dev"}, {"--users", "users.toml", "--listen", ":0"}} {
		out.Reset()
		errs.Reset()
		code := Main(context.Background(), append([]string{"server", "--hash-password"}, args...), strings.NewReader("pw\n"), &out, &errs)
		if code != exitUsage || !strings.Contains(errs.String(), args[0]) || !strings.Contains(errs.String(), "leave it out") || out.Len() != 0 {
			t.Errorf("--hash-password %s: exit %d, stdout %q, stderr %q; want exit %d naming %s", strings.Join(args, " "), code, &out, &errs, exitUsage, args[0])
		}
	}
	errs.Reset()
	if code := Main(context.Background(), []string{"server", "--hash-password"}, strings.NewReader("\n"), &out, &errs); code != exitUsage || !strings.Contains(errs.String(), "write the password on stdin") {
		t.Errorf("empty password: exit %d, %q", code, &errs)
	}
}
