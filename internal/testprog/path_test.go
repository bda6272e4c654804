package testprog

import "testing"

// The sbin directories Find looks in are put on a PATH that lacks them (a
// user's PATH on Debian), once each, after what it holds.
func TestPathWithSbin(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/usr/bin:/bin", "/usr/bin:/bin:/usr/sbin:/usr/local/sbin:/sbin"},
		{"/usr/sbin:/usr/bin", "/usr/sbin:/usr/bin:/usr/local/sbin:/sbin"},
		{"/usr/local/sbin:/usr/sbin:/sbin", "/usr/local/sbin:/usr/sbin:/sbin"},
		{"", "/usr/sbin:/usr/local/sbin:/sbin"},
	} {
		if got := pathWithSbin(c.in); got != c.want {
			t.Errorf("pathWithSbin(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
