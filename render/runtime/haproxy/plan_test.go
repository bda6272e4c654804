package haproxy

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/svcreg/svcreg/render/runtime"
)

const base = `# generated
defaults
    mode http
backend api
    balance roundrobin
    option httpchk GET /
    server a 127.0.0.1:8001 check
    server b 127.0.0.1:8002 check weight 5
`

func planOf(t *testing.T, old, new string) (runtime.Plan, error) {
	t.Helper()
	a, err := New(runtime.Settings{Socket: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	return a.Plan([]byte(old), []byte(new))
}

func TestPlanServerChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, new string
		want      []string
	}{
		{"add", base + "    server c 127.0.0.1:8003 check maxconn 100\n", []string{
			"add server api/c 127.0.0.1:8003 check maxconn 100", "enable health api/c", "set server api/c state ready"}},
		{"add disabled, weight", base + "    server c 10.0.0.3:80 disabled weight 0\n", []string{
			"add server api/c 10.0.0.3:80 weight 0"}},
		{"add ipv6", base + "    server c ::1:8003\n", []string{"add server api/c ipv6@::1:8003", "set server api/c state ready"}},
		{"port", strings.Replace(base, ":8002", ":9002", 1), []string{
			"add server api/svcreg:standin:b 127.0.0.1:9002 check weight 5", "enable health api/svcreg:standin:b", "set server api/svcreg:standin:b state ready",
			"set server api/b state drain",
			"# in the background, once no sessions are left on api/b (at most 10s): set server api/b addr 127.0.0.1 port 9002; set server api/b state ready",
			"# then: set server api/svcreg:standin:b state drain",
			"# in the background, once no sessions are left on api/svcreg:standin:b (at most 10s): set server api/svcreg:standin:b state maint; del server api/svcreg:standin:b"}},
		{"weight", strings.Replace(base, "weight 5", "weight 7", 1), []string{"set weight api/b 7"}},
		{"disable", strings.Replace(base, "weight 5", "weight 5 disabled", 1), []string{"set server api/b state maint"}},
		{"remove", strings.Replace(base, "    server a 127.0.0.1:8001 check\n", "", 1), []string{
			"set server api/a state drain",
			"# in the background, once no sessions are left on api/a (at most 10s): set server api/a state maint; del server api/a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planOf(t, base, tc.new)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Commands(); !slices.Equal(got, tc.want) {
				t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// Servers of the file named as stand-ins might be (by services whose id
// is their name) are not in the way of a move's stand-in: its name has a
// character no service id has.
func TestPlanStandinNotTakenByServices(t *testing.T) {
	t.Parallel()
	squat := base
	for n := 1; n <= maxStandins; n++ {
		name := "svcreg-standin-b"
		if n > 1 {
			name += "-" + strconv.Itoa(n)
		}
		squat += "    server " + name + " 127.0.0.1:" + strconv.Itoa(8100+n) + " check\n"
	}
	p, err := planOf(t, squat, strings.Replace(squat, ":8002", ":9002", 1))
	if err != nil {
		t.Fatalf("a move with servers named as stand-ins were: %v", err)
	}
	if got := p.Commands(); len(got) == 0 || got[0] != "add server api/svcreg:standin:b 127.0.0.1:9002 check weight 5" {
		t.Fatalf("commands:\n%s", strings.Join(got, "\n"))
	}
}

func TestPlanNeedsReload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, old, new, why string
	}{
		{"new backend", base, base + "backend web\n    balance roundrobin\n    server w 127.0.0.1:1\n", "sections were added"},
		{"option", base, strings.Replace(base, "GET /", "GET /health", 1), "changed apart from its server lines"},
		{"server option", base, strings.Replace(base, "8001 check", "8001 check inter 5s", 1), "settings other than"},
		{"keyword add server refuses", base, base + "    server c 127.0.0.1:8003 cookie c\n", `"cookie" is not a keyword`},
		{"hostname", base, base + "    server c app.internal:8003\n", "not an IP address"},
		{"static algorithm", strings.Replace(base, "roundrobin", "source", 1), strings.Replace(base, "roundrobin", "source", 1) + "    server c 127.0.0.1:8003\n", "static"},
		{"default-server", base + "    default-server inter 3s\n", base + "    default-server inter 3s\n    server c 127.0.0.1:8003\n", "default-server"},
		{"default-server in defaults, tab and quotes", strings.Replace(base, "defaults\n", "defaults\n    default-server\tinter 3s ca-file '/ca.pem'\n", 1),
			strings.Replace(base, "defaults\n", "defaults\n    default-server\tinter 3s ca-file '/ca.pem'\n", 1) + "    server c 127.0.0.1:8003\n", "default-server"},
		// "backend NAME from DEFAULTS" takes that section's settings,
		// not the last defaults section's.
		{"default-server in the defaults section named by from", named, named + "    server c 127.0.0.1:8003\n", "default-server"},
		{"default-server reached through from twice", strings.Replace(named, "backend api from tuned", "defaults more from tuned\n    mode http\nbackend api from more", 1),
			strings.Replace(named, "backend api from tuned", "defaults more from tuned\n    mode http\nbackend api from more", 1) + "    server c 127.0.0.1:8003\n", "default-server"},
		{"default-server reached through an unnamed defaults section's from", strings.Replace(named, "backend api from tuned", "defaults from tuned\n    mode http\nbackend api", 1),
			strings.Replace(named, "backend api from tuned", "defaults from tuned\n    mode http\nbackend api", 1) + "    server c 127.0.0.1:8003\n", "default-server"},
		{"static algorithm in the defaults section named by from", strings.NewReplacer("default-server ssl verify none", "balance static-rr", "    balance roundrobin\n", "").Replace(named),
			strings.NewReplacer("default-server ssl verify none", "balance static-rr", "    balance roundrobin\n", "").Replace(named) + "    server c 127.0.0.1:8003\n", "static"},
		{"defaults section of another file", strings.Replace(base, "backend api", "backend api from elsewhere", 1),
			strings.Replace(base, "backend api", "backend api from elsewhere", 1) + "    server c 127.0.0.1:8003\n", `"elsewhere", which is not in this file`},
		// A server-template's servers are live but not in the file:
		// the adapter would take them for servers to delete.
		{"server-template", base + "    server-template web 3 127.0.0.1:9000\n", base + "    server-template web 3 127.0.0.1:9000\n    server c 127.0.0.1:8003\n", "server-template"},
		{"agent-check weight", base + "    server c 127.0.0.1:8003 agent-check agent-port 9 weight 4\n", base + "    server c 127.0.0.1:8003 agent-check agent-port 9 weight 8\n", "agent-check"},
		{"name the CLI would split", base, base + "    server c;del 127.0.0.1:8003\n", "characters"},
		{"backend name the CLI would split", strings.Replace(base, "backend api", "backend api;shutdown", 1),
			strings.Replace(base, "backend api", "backend api;shutdown", 1) + "    server c 127.0.0.1:8003\n", "its name has characters"},
		{"zone the CLI would split", base, base + "    server c [fe80::1%x;shutdown]:8003\n", "zone"},
		{"zone", base, base + "    server c [fe80::1%eth0]:8003\n", "zone"},
		{"port offset", base, base + "    server c 127.0.0.1:+8003\n", "no port"},
		{"negative port offset", base, base + "    server c 127.0.0.1:-8003\n", "no port"},
		{"quotes", base, base + "    server c 127.0.0.1:8003 sni \"x\"\n", "quotes"},
		{"comment only", base, base + "# more\n", "nothing but comments"},
		// A quoted '#' starts no comment: what follows it is the line's
		// (and the server added beside it does not make it runtime only).
		{"quoted #", strings.Replace(base, "GET /", "GET '/health#a'", 1),
			strings.Replace(base, "GET /", "GET '/health#b'", 1) + "    server c 127.0.0.1:8003\n", "changed apart from its server lines"},
		{"escaped #", strings.Replace(base, "GET /", `GET /a\#1`, 1), strings.Replace(base, "GET /", `GET /a\#2`, 1), "changed apart from its server lines"},
		// Inside quotes spacing is part of the argument; and HAProxy
		// splits words at ASCII white space only, so a Unicode space is
		// part of a word.
		{"quoted spacing", strings.Replace(base, "GET /", "GET '/a b'", 1),
			strings.Replace(base, "GET /", "GET '/a  b'", 1) + "    server c 127.0.0.1:8003\n", "changed apart from its server lines"},
		{"no-break space", strings.Replace(base, "GET /", "GET '/a b'", 1),
			strings.Replace(base, "GET /", "GET '/a\u00a0b'", 1) + "    server c 127.0.0.1:8003\n", "changed apart from its server lines"},
		{"ideographic space", strings.Replace(base, "GET /", "GET /a b", 1),
			strings.Replace(base, "GET /", "GET /a\u3000b", 1) + "    server c 127.0.0.1:8003\n", "changed apart from its server lines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planOf(t, tc.old, tc.new)
			var nr *runtime.NeedsReload
			if !errors.As(err, &nr) || !strings.Contains(nr.Reason, tc.why) {
				t.Fatalf("got %v, want a reload because %q", err, tc.why)
			}
		})
	}
}

// named has a backend that takes its settings from a defaults section
// other than the last one before it.
var named = strings.Replace(strings.Replace(base, "backend api", "backend api from tuned", 1),
	"defaults\n", "defaults tuned\n    mode http\n    default-server ssl verify none\ndefaults plain\n", 1)

// A backend that names a defaults section without default-server takes
// its changes at runtime, also when the last defaults section has one.
func TestPlanFromDefaultsWithoutDefaultServer(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(strings.Replace(base, "backend api", "backend api from plain", 1),
		"defaults\n", "defaults plain\n    mode http\ndefaults tuned\n    default-server ssl verify none\n", 1)
	if _, err := planOf(t, cfg, cfg+"    server c 127.0.0.1:8003\n"); err != nil {
		t.Fatal(err)
	}
}

func TestSocketSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, network, address string
		master               bool
	}{
		{"/run/haproxy/admin.sock", "unix", "/run/haproxy/admin.sock", false},
		{"master:/run/haproxy-master.sock", "unix", "/run/haproxy-master.sock", true},
		{"127.0.0.1:9999", "tcp", "127.0.0.1:9999", false},
		{"unix:rel.sock", "unix", "rel.sock", false},
	} {
		c, err := newCLI(tc.in, DefaultTimeout)
		if err != nil || c.network != tc.network || c.address != tc.address || c.master != tc.master {
			t.Errorf("%q: got %+v, %v", tc.in, c, err)
		}
	}
	for _, bad := range []string{"", "master:", "nonsense"} {
		if _, err := newCLI(bad, DefaultTimeout); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// "add server BACKEND/NAME" has one word more than the line's "server
// NAME"; HAProxy's CLI reads 64 words of a command, its configuration 64
// of a line.
func TestPlanAddServerWords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		options int // words after the address
		runtime bool
	}{{58, true}, {60, true}, {61, false}} {
		line := "    server c 127.0.0.1:8003" + strings.Repeat(" maxconn 5", tc.options/2) + strings.Repeat(" ssl", tc.options%2) + "\n"
		_, err := planOf(t, base, base+line)
		var nr *runtime.NeedsReload
		switch {
		case tc.runtime && err != nil:
			t.Errorf("%d words after the address: %v", tc.options, err)
		case !tc.runtime && (!errors.As(err, &nr) || !strings.Contains(nr.Reason, "at most 64")):
			t.Errorf("%d words after the address: got %v, want a reload", tc.options, err)
		}
	}
}

// HAProxy ends a line at a carriage return, unless a run of white space
// that a blank starts outside quotes takes it.
func TestSplitLineCarriageReturn(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"    server b 127.0.0.1:2 maxconn 3\r ssl":   "server b 127.0.0.1:2 maxconn 3",
		"    server b 127.0.0.1:2 maxconn 3 \r ssl":  "server b 127.0.0.1:2 maxconn 3 ssl",
		"    server b 127.0.0.1:2 maxconn 3\t\r ssl": "server b 127.0.0.1:2 maxconn 3 ssl",
		"  \r  server b 127.0.0.1:2":                 "server b 127.0.0.1:2",
		"    server b 127.0.0.1:2\r\n":               "server b 127.0.0.1:2",
		"    http-check send meth GET uri '/a\rb'":   "http-check send meth GET uri '/a",
	} {
		if _, got := splitLine(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
