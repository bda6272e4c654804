package main

import (
	"flag"
	"io"
	"testing"
)

// Sizes of bytes take units, as max_output does in a template's config;
// the default shows in them.
func TestBytesFlag(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		arg  string
		want int64
		ok   bool
	}{
		{"32MiB", 32 << 20, true},
		{"65536", 65536, true},
		{"512KiB", 512 << 10, true},
		{"1GiB", 1 << 30, true},
		{"0", 0, true},
		{"lots", 0, false},
		{"-5", 0, false},
		{"32MB", 0, false},
	} {
		n := int64(7)
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Var(bytesFlag{&n}, "size", "")
		err := fs.Parse([]string{"--size", c.arg})
		if (err == nil) != c.ok || c.ok && n != c.want {
			t.Errorf("--size %s: %d, %v; want %d (ok %v)", c.arg, n, err, c.want, c.ok)
		}
	}
	n := int64(32 << 20)
	if s := (bytesFlag{&n}).String(); s != "32MiB" {
		t.Errorf("32 MiB shows as %q", s)
	}
	n = 1000
	if s := (bytesFlag{&n}).String(); s != "1000" {
		t.Errorf("1000 shows as %q", s)
	}
}
