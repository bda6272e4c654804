package haproxy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// config is as much of an HAProxy configuration file as the runtime
// adapter needs: its sections, and in the sections that hold servers, the
// server lines apart from everything else.
type config struct {
	sections []*section
	backends map[string]*section // the first backend or listen section of each name
}

// section is one section of the file. Lines holds every line but the
// server lines, comments stripped and spaces normalized, in order; two
// files whose sections have equal headers and lines differ at most in
// their servers.
type section struct {
	header string // "backend api"
	kind   string // "backend"
	name   string
	// from is the defaults section the header names ("backend api from
	// tuned"), whose settings it takes instead of the last one's.
	from    string
	lines   []string
	servers []*server
	byName  map[string]*server // the first server of each name
	// unsupported, when set, says why servers of this section cannot be
	// changed at runtime.
	unsupported string
}

// server is one server line.
type server struct {
	line string // the words of the line
	name string
	addr netip.Addr
	port int
	// weight is the server's weight (1 when the line gives none).
	weight   int
	disabled bool
	// options are the line's other keywords and their arguments, in
	// order.
	options []string
	check   bool // "check": health checks to enable after add server
	// agent: "agent-check". Its agent's answers set the live weight (a
	// share of the weight the server was loaded or added with), so the
	// live weight is no difference from the file, and a new weight in
	// the file needs a reload.
	agent bool
	// unsupported, when set, says why the server cannot be added at
	// runtime.
	unsupported string
}

// sectionKeywords start a section (HAProxy 2.6).
var sectionKeywords = map[string]bool{
	"global": true, "defaults": true, "frontend": true, "backend": true, "listen": true,
	"peers": true, "resolvers": true, "userlist": true, "mailers": true, "program": true,
	"http-errors": true, "ring": true, "cache": true, "fcgi-app": true,
}

// conditionals are the directives of HAProxy's conditional blocks.
var conditionals = map[string]bool{".if": true, ".elif": true, ".else": true, ".endif": true}

// parseConfig splits an HAProxy configuration into sections. It does not
// check the file (the check command does); lines it cannot follow (quotes,
// escapes, environment variables on server lines) make their section
// unsupported, so that their changes go through a reload.
func parseConfig(text []byte) *config {
	c := &config{}
	cur := &section{header: "", kind: ""} // lines before any section
	c.sections = append(c.sections, cur)
	open := 0 // conditional blocks (.if) open
	for _, raw := range strings.Split(string(text), "\n") {
		words, norm := splitLine(raw)
		if len(words) == 0 {
			continue
		}
		if sectionKeywords[words[0]] {
			cur = &section{header: norm, kind: words[0]}
			if open > 0 {
				cur.unsupported = "it is inside a conditional block (.if), which HAProxy may skip"
			}
			cur.from = fromOf(words)
			if len(words) > 1 {
				cur.name = words[1]
				if !safeWord(cur.name) {
					// Every command names it: one the CLI would split
					// (from a file svcreg did not write) never reaches it.
					cur.unsupported = "its name has characters the runtime API cannot take"
				}
			}
			c.sections = append(c.sections, cur)
			continue
		}
		if words[0] != "server" || (cur.kind != "backend" && cur.kind != "listen") {
			cur.lines = append(cur.lines, norm)
			switch words[0] {
			case ".if":
				open++
			case ".endif":
				open = max(0, open-1)
			}
			switch {
			case cur.unsupported != "":
			case conditionals[words[0]]:
				// HAProxy skips the lines of a false block: its server
				// lines are no servers of the section.
				cur.unsupported = "it has a conditional block (.if), whose server lines HAProxy may skip"
			case words[0] == "default-server":
				// HAProxy 2.6: a server added at runtime does not take
				// the default-server settings.
				cur.unsupported = "it has a default-server line, which servers added at runtime would not follow"
			case words[0] == "server-template" && (cur.kind == "backend" || cur.kind == "listen"):
				// Its servers are live, but no line of the file names
				// them: the adapter would take them for servers to
				// delete.
				cur.unsupported = "it has a server-template line, whose servers the file does not list one by one"
			}
			continue
		}
		cur.servers = append(cur.servers, parseServer(raw, words, norm))
	}
	// The load-balancing algorithm: the section's own, else the last
	// defaults section's before it in this file. HAProxy 2.6 adds servers
	// only to backends with a dynamic algorithm.
	c.backends = map[string]*section{}
	for _, s := range c.sections {
		if _, ok := c.backends[s.name]; !ok && (s.kind == "backend" || s.kind == "listen") {
			c.backends[s.name] = s
		}
	}
	// A section takes the settings of the last defaults section before
	// it, or of the one its header names ("from"): a defaults section
	// replaces the one before, or extends the one it names.
	type defaults struct {
		balance       string
		defaultServer bool
		// elsewhere: the settings come from a defaults section this
		// file does not have (another file's), which is named here.
		elsewhere string
	}
	var last defaults
	named := map[string]defaults{}
	for _, s := range c.sections {
		s.byName = make(map[string]*server, len(s.servers))
		for _, sv := range s.servers {
			if _, ok := s.byName[sv.name]; !ok {
				s.byName[sv.name] = sv
			}
		}
		base := last
		if s.kind == "defaults" {
			base = defaults{}
		}
		if s.from != "" {
			d, ok := named[s.from]
			if !ok {
				d = defaults{elsewhere: s.from}
			}
			base = d
		}
		switch s.kind {
		case "defaults":
			last = defaults{balanceOf(s.lines, base.balance), base.defaultServer || hasLine(s.lines, "default-server"), base.elsewhere}
			if s.name != "" && s.name != "from" {
				named[s.name] = last
			}
		case "backend", "listen":
			if s.unsupported != "" {
				continue
			}
			if base.elsewhere != "" {
				s.unsupported = fmt.Sprintf("it takes the settings of defaults section %q, which is not in this file: a default-server line there would not reach servers added at runtime", base.elsewhere)
				continue
			}
			inherited := base.balance
			if base.defaultServer {
				s.unsupported = "a defaults section has a default-server line, which servers added at runtime would not follow"
				continue
			}
			if algo := balanceOf(s.lines, inherited); algo != "" && !dynamicBalance(algo, s.lines) {
				s.unsupported = fmt.Sprintf("its load-balancing algorithm %q is static; HAProxy changes servers at runtime only with a dynamic one (roundrobin, leastconn, random, or hash-type consistent)", algo)
			}
		}
	}
	return c
}

// fromOf returns the defaults section a section header names with
// "from" (HAProxy 2.4 and later): "backend NAME from DEFAULTS", "defaults
// [NAME] from DEFAULTS"; "" if none.
func fromOf(words []string) string {
	switch {
	case words[0] == "defaults" && len(words) > 2 && words[1] == "from":
		return words[2]
	case len(words) > 3 && words[2] == "from":
		return words[3]
	}
	return ""
}

// splitLine returns a line's words, split as HAProxy splits them outside
// quotes (at ASCII white space: a Unicode space is part of a word), and
// the line as changes are told by: its words joined by single spaces, or,
// for a line with quotes or escapes, whose words this split does not
// follow, its text (without its comment and the white space around it),
// so that a change inside quotes, spacing included, is a change.
func splitLine(raw string) (words []string, norm string) {
	line := strings.Trim(uncommented(strings.TrimLeft(raw, asciiSpace)), asciiSpace)
	words = strings.FieldsFunc(line, func(r rune) bool { return r < utf8.RuneSelf && strings.ContainsRune(asciiSpace, r) })
	if strings.ContainsAny(line, "\"'\\") {
		return words, line
	}
	return words, strings.Join(words, " ")
}

// asciiSpace is the white space HAProxy separates words at.
const asciiSpace = " \t\r\v\f"

// uncommented is line (without its leading white space) without its
// comment: from the first '#' that is neither quoted (in '…' or "…") nor
// escaped with a backslash, as HAProxy reads it. A quoted '#' is part of
// its argument: a change after it is a change of the line. HAProxy also
// ends a line at a carriage return, unless it is in a run of white space
// that a blank (a space, a tab) starts outside quotes: what follows one
// is no word of the line.
func uncommented(line string) string {
	var quote byte
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\r' && (quote != 0 || i == 0 || !strings.ContainsRune(asciiSpace, rune(line[i-1]))):
			// Inside quotes too. (A run of white space started by a
			// blank takes the carriage returns in it.)
			return line[:i]
		case quote == '\'' && c == '\'':
			quote = 0
		case quote == '\'':
		case c == '\\':
			i++ // escaped, inside double quotes too
		case c == '"' || c == '\'':
			if quote == 0 {
				quote = c
			} else if quote == c {
				quote = 0
			}
		case c == '#' && quote == 0:
			return line[:i]
		}
	}
	return line
}

// balanceOf returns the algorithm of the last "balance" line, or def.
func balanceOf(lines []string, def string) string {
	for _, l := range lines {
		if w, _ := splitLine(l); len(w) > 1 && w[0] == "balance" {
			def = w[1]
		}
	}
	return def
}

// hasLine says whether one of lines starts with keyword. The lines are a
// section's, as parseConfig keeps them: with quotes, their text.
func hasLine(lines []string, keyword string) bool {
	for _, l := range lines {
		if w, _ := splitLine(l); len(w) > 0 && w[0] == keyword {
			return true
		}
	}
	return false
}

// dynamicBalance says whether HAProxy can add servers to a backend using
// algo (management guide: "add server" needs a dynamic algorithm).
func dynamicBalance(algo string, lines []string) bool {
	switch algo {
	case "roundrobin", "leastconn", "random", "first":
		return true
	case "static-rr":
		return false
	}
	// The hashing algorithms are dynamic with consistent hashing only.
	for _, l := range lines {
		if w, _ := splitLine(l); len(w) > 1 && w[0] == "hash-type" && w[1] == "consistent" {
			return true
		}
	}
	return false
}

func (s *section) server(name string) *server { return s.byName[name] }

// backend returns c's first backend or listen section named name, or nil.
func (c *config) backend(name string) *section { return c.backends[name] }

// flagKeywords are the server keywords without an argument that "add
// server" accepts in HAProxy 2.6 (management guide, "add server").
var flagKeywords = map[string]bool{
	"agent-check": true, "allow-0rtt": true, "backup": true, "check": true,
	"check-send-proxy": true, "check-ssl": true, "check-via-socks4": true,
	"disabled": true, "enabled": true, "no-ssl-reuse": true, "no-tls-tickets": true,
	"send-proxy": true, "send-proxy-v2": true, "send-proxy-v2-ssl": true,
	"send-proxy-v2-ssl-cn": true, "ssl": true, "tfo": true, "tls-tickets": true,
	"force-sslv3": true, "force-tlsv10": true, "force-tlsv11": true, "force-tlsv12": true, "force-tlsv13": true,
	"no-sslv3": true, "no-tlsv10": true, "no-tlsv11": true, "no-tlsv12": true, "no-tlsv13": true,
}

// argKeywords are the keywords with one argument that "add server" accepts
// in HAProxy 2.6. ("source" and "usesrc", also accepted, take a variable
// number of arguments; servers using them are reloaded.)
var argKeywords = map[string]bool{
	"agent-addr": true, "agent-inter": true, "agent-port": true, "agent-send": true,
	"alpn": true, "addr": true, "ca-file": true, "check-alpn": true, "check-proto": true,
	"check-sni": true, "ciphers": true, "ciphersuites": true, "crl-file": true, "crt": true,
	"downinter": true, "error-limit": true, "fall": true, "fastinter": true, "id": true,
	"inter": true, "maxconn": true, "maxqueue": true, "minconn": true, "npn": true,
	"observe": true, "on-error": true, "on-marked-down": true, "on-marked-up": true,
	"pool-low-conn": true, "pool-max-conn": true, "pool-purge-delay": true, "port": true,
	"proto": true, "proxy-v2-options": true, "rise": true, "slowstart": true, "sni": true,
	"ssl-max-ver": true, "ssl-min-ver": true, "track": true, "verify": true,
	"verifyhost": true, "weight": true, "ws": true,
}

// parseServer reads "server NAME ADDRESS[:PORT] [keyword [arg]]...".
func parseServer(raw string, words []string, norm string) *server {
	s := &server{line: norm, weight: 1}
	if len(words) > 1 {
		s.name = words[1]
	}
	bad := func(format string, args ...any) *server {
		if s.unsupported == "" {
			s.unsupported = fmt.Sprintf(format, args...)
		}
		return s
	}
	if strings.ContainsAny(raw, "\"'\\$") {
		return bad("its line has quotes, escapes or variables")
	}
	if len(words) < 3 {
		return bad("it has no address")
	}
	if !safeWord(s.name) {
		return bad("its name %q has characters the runtime API cannot take", s.name)
	}
	hostport := strings.TrimPrefix(strings.TrimPrefix(words[2], "ipv4@"), "ipv6@")
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return bad("its address %q has no port", words[2])
	}
	host, port := hostport[:i], hostport[i+1:]
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return bad("its address %q is not an IP address and port (names are resolved at start only)", words[2])
	}
	if addr.Zone() != "" {
		// A zone may hold any character but a space, a ';' that the
		// CLI reads as the end of a command included.
		return bad("its address %q has an IPv6 zone", words[2])
	}
	// Digits only: HAProxy reads a port with a sign as an offset from the
	// client's destination port.
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || port[0] < '0' || port[0] > '9' {
		return bad("its address %q has no port from 1 to 65535", words[2])
	}
	s.addr, s.port = addr.Unmap(), p
	for i := 3; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "disabled":
			s.disabled = true
		case w == "enabled":
			s.disabled = false
		case flagKeywords[w]:
			s.options = append(s.options, w)
			s.check = s.check || w == "check"
			s.agent = s.agent || w == "agent-check"
		case argKeywords[w] && i+1 < len(words):
			i++
			if !safeWord(words[i]) {
				return bad("the argument %q of %s has characters the runtime API cannot take", words[i], w)
			}
			if w == "weight" {
				n, err := strconv.Atoi(words[i])
				if err != nil || n < 0 || n > 256 {
					return bad("its weight %q is not from 0 to 256", words[i])
				}
				s.weight = n
				continue
			}
			s.options = append(s.options, w, words[i])
		default:
			s.options = append(s.options, words[i:]...)
			return bad("%q is not a keyword HAProxy 2.6 can set on a server added at runtime", w)
		}
	}
	// The words of its "add server" (addCommands): HAProxy's CLI drops
	// those past maxCLIWords without a word, and the server would be
	// added without the settings they give. The command has one word more
	// than the line ("add server BACKEND/NAME" for "server NAME"), which
	// the configuration takes with up to 64.
	n := 4 + len(s.options)
	if s.weight != 1 {
		n += 2
	}
	if n > maxCLIWords {
		return bad("its \"add server\" command would have %d words, and HAProxy's runtime API reads at most %d", n, maxCLIWords)
	}
	return s
}

// maxCLIWords is how many words of a command HAProxy's CLI reads
// (MAX_CLI_ARGS).
const maxCLIWords = 64

// safeWord says whether a word can be sent to the runtime API as it is:
// the CLI splits on spaces and ';' and treats '\' specially.
func safeWord(w string) bool {
	if w == "" || len(w) > 512 {
		return false
	}
	for _, r := range w {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_.:/@%+,=[]", r):
		default:
			return false
		}
	}
	return true
}

// hostPort formats the server's address for "add server".
func (s *server) hostPort() string {
	if s.addr.Is6() {
		return "ipv6@" + s.addr.String() + ":" + strconv.Itoa(s.port)
	}
	return s.addr.String() + ":" + strconv.Itoa(s.port)
}

// sameOptions says whether two server lines differ at most in what the
// runtime API sets: address, port, weight and state.
func sameOptions(a, b *server) bool {
	return slices.Equal(a.options, b.options)
}
