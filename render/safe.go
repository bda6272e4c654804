package render

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/registry"
	"github.com/svcreg/svcreg/watcher"
)

// Registry data (ids, tags, metadata) is written by anyone holding an
// account's credentials, so it is untrusted input to a load balancer's
// config. The functions here turn it into config tokens that cannot carry
// anything else (a directive, a comment, a new section), or refuse it.

// The metadata keys an Endpoint is read from.
const (
	MetaIP     = "ip"     // the address: an IPv4 or IPv6 address (or a host name, with allow_hostnames)
	MetaHost   = "host"   // the address when there is no "ip"
	MetaPort   = "port"   // 1..65535
	MetaWeight = "weight" // optional: 1..256
)

// Limits of the checks.
const (
	maxIdentifier = 65  // the longest service id (spec: 3..65); a fine HAProxy server and nginx upstream name
	maxHostName   = 253 // RFC 1035
	maxWeight     = 256 // HAProxy's maximum; nginx has none below it
	maxQuoted     = 1024
)

// Endpoint is a service as a load balancer server: its id, address, port
// and weight checked and parsed once. Every field is safe to paste into an
// nginx or HAProxy config unquoted; Service is the raw, untrusted service.
type Endpoint struct {
	// Name is the service id, checked by ident.
	Name    string
	Address Address
	Port    int
	// Weight is 0 when the service has no "weight".
	Weight  int
	Service registry.Service
}

// HostPort is "10.0.0.1:80", "[2001:db8::1]:80" or "web.internal:80", the
// form both nginx's and HAProxy's server lines take.
func (e Endpoint) HostPort() string { return e.Address.Bracketed() + ":" + strconv.Itoa(e.Port) }

// Address is a checked IPv4 or IPv6 address, or a host name.
type Address struct {
	ip   netip.Addr
	host string
}

// String is the address alone: "10.0.0.1", "2001:db8::1", "web.internal".
func (a Address) String() string {
	if a.ip.IsValid() {
		return a.ip.String()
	}
	return a.host
}

// Bracketed is String with an IPv6 address in brackets ("[2001:db8::1]"),
// as an address followed by ":port" must be written for nginx and HAProxy.
func (a Address) Bracketed() string {
	if a.IsIPv6() {
		return "[" + a.ip.String() + "]"
	}
	return a.String()
}

// IsIPv6 reports whether the address is an IPv6 address (an IPv4-mapped
// one included: it is written the IPv6 way).
func (a Address) IsIPv6() bool { return a.ip.Is6() }

// IsHostName reports whether the address is a host name (resolved by the
// load balancer) rather than an IP address.
func (a Address) IsHostName() bool { return !a.ip.IsValid() }

// RefusedError is registry data a safe function refused.
type RefusedError struct {
	Field  string // "id", "ip", "port", ...
	Value  string // "" when withheld
	Reason string

	withheld bool // the value is not shown: it may be a secret
}

func (e *RefusedError) Error() string {
	if e.withheld {
		return fmt.Sprintf("%s refused (the value is not shown): %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s %s refused: %s", e.Field, shown(e.Value), e.Reason)
}

// withhold is err without the refused value, for a value function called
// in a template: what it is given may be a configuration value (a
// password in an Authorization header, say), and the error goes to the
// log, /healthz and the status page. A refused service's fields are
// shown (they name the service); a reason never quotes the value.
func withhold(err error) error {
	if err == nil {
		return nil
	}
	var r *RefusedError
	if !errors.As(err, &r) {
		return err
	}
	return &RefusedError{Field: r.Field, Reason: r.Reason, withheld: true}
}

// shown is a value as it may appear in an error message: quoted (control
// bytes escaped) and cut to 64 characters.
func shown(v string) string {
	if c := cut(v); c != v {
		return strconv.QuoteToASCII(strings.TrimSuffix(c, "…")) + "…"
	}
	return strconv.QuoteToASCII(v)
}

// cut cuts v to 64 characters, for a log attribute or a JSON field (which
// escape control bytes themselves).
func cut(v string) string {
	const max = 64
	if utf8.RuneCountInString(v) > max {
		return string([]rune(v)[:max]) + "…"
	}
	return v
}

func refuse(field, value, reason string, args ...any) *RefusedError {
	return &RefusedError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)}
}

// addrRules are what a template lets an address be besides an IP address
// that reaches another host: a host name (allow_hostnames), a loopback
// address (allow_loopback).
type addrRules struct {
	hostnames, loopback bool
	// local are the addresses of the renderer's own host (unmapped;
	// hostAddrs.current): refused as loopback is, since they reach that
	// host's listeners on every address, the load balancer's frontend
	// among them.
	local map[netip.Addr]bool
}

// parseAddress checks an address: an IPv4 address in dotted decimal, an
// IPv6 address without a zone, or, when the rules take them, a host name
// of letters, digits and hyphens in dot-separated labels. See checkIP for
// the addresses refused.
func parseAddress(field, s string, rules addrRules) (Address, error) {
	if s == "" {
		return Address{}, refuse(field, s, "empty")
	}
	if strings.ContainsAny(s, ":") || isDigitsAndDots(s) {
		ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
		if err != nil {
			return Address{}, refuse(field, s, "not an IP address")
		}
		if ip.Zone() != "" {
			return Address{}, refuse(field, s, "an IPv6 zone is not allowed")
		}
		if err := checkIP(field, s, ip, rules); err != nil {
			return Address{}, err
		}
		return Address{ip: ip}, nil
	}
	if err := checkHostName(field, s); err != nil {
		return Address{}, err
	}
	if !rules.hostnames {
		return Address{}, refuse(field, s, "a host name, and the template takes IP addresses only (allow_hostnames = true takes names: one nginx cannot resolve fails the whole group)")
	}
	// localhost and the names below it are the host's own (RFC 6761), as
	// are the names distributions give loopback in /etc/hosts.
	l := strings.ToLower(s)
	if !rules.loopback && (loopbackNames[l] || strings.HasSuffix(l, ".localhost")) {
		return Address{}, refuse(field, s, loopbackRefused)
	}
	return Address{host: l}, nil
}

// loopbackNames are host names that are loopback by definition (RFC
// 6761) or in the /etc/hosts of the common distributions.
var loopbackNames = map[string]bool{
	"localhost": true, "localhost4": true, "localhost6": true,
	"localhost.localdomain": true, "localhost4.localdomain4": true, "localhost6.localdomain6": true,
	"ip6-localhost": true, "ip6-loopback": true,
}

// loopbackRefused is why a loopback address is refused.
const loopbackRefused = "a loopback address: it reaches the load balancer's own host, its listeners meant for that host alone (a stats page, a status page, a runtime API) or the load balancer itself (a loop); allow_loopback = true takes it where backends on that host are meant"

// checkIP refuses the addresses a load balancer treats specially or that
// reach the renderer's own host network rather than a service: the
// unspecified address (0.0.0.0, ::, and 0.0.0.0/8; HAProxy forwards to the
// client's own destination), broadcast (255.255.255.255), multicast,
// link-local (169.254.0.0/16 with the cloud metadata service
// 169.254.169.254, fe80::/10) and the cloud metadata services elsewhere
// (AWS's fd00:ec2::254 and its EKS Pod Identity Agent's fd00:ec2::23,
// Google Cloud's fd20:ce::254, Scaleway's fd00:42::42, Alibaba's
// 100.100.100.200, Azure's 168.63.129.16, Oracle Cloud Classic's
// 192.0.0.192). IPv4-mapped IPv6
// addresses, NAT64 ones (64:ff9b::/96) and 6to4 ones (2002::/16) are
// checked as the IPv4 address they carry; local-use NAT64 (64:ff9b:1::/48)
// is refused. Loopback (127.0.0.0/8, ::1), and an address of the
// renderer's own host (rules.local), is refused unless rules.loopback is true
// (allow_loopback).
func checkIP(field, s string, ip netip.Addr, rules addrRules) error {
	ip = ip.Unmap()
	given := ip // an address of the host's may be one that carries another
	switch b := ip.As16(); {
	case nat64Local.Contains(ip):
		return refuse(field, s, "a local-use NAT64 address (its IPv4 address may be at any of several places in it)")
	case nat64.Contains(ip):
		ip = netip.AddrFrom4([4]byte(b[12:]))
	case sixToFour.Contains(ip):
		ip = netip.AddrFrom4([4]byte(b[2:6]))
	case ipv4Translated.Contains(ip), ipv4Compatible.Contains(ip) && ip != netip.IPv6Loopback() && !ip.IsUnspecified():
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case metadataServices[ip]:
		return refuse(field, s, "a cloud metadata service")
	case ip.IsUnspecified() || (ip.Is4() && ip.As4()[0] == 0):
		return refuse(field, s, "the unspecified address (HAProxy would forward to the client's own destination)")
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return refuse(field, s, "the broadcast address")
	case ip.IsMulticast():
		return refuse(field, s, "a multicast address")
	case ip.IsLinkLocalUnicast():
		return refuse(field, s, "a link-local address (169.254.169.254 is the cloud metadata service)")
	case ip.IsLoopback() && !rules.loopback:
		return refuse(field, s, loopbackRefused)
	case !rules.loopback && (rules.local[ip] || rules.local[given]):
		return refuse(field, s, localRefused)
	}
	return nil
}

// localRefused is why an address of the renderer's own host is refused.
const localRefused = "an address of this host: like a loopback address, it reaches the load balancer's own host, its listeners on every address and the load balancer's own frontend (a loop); allow_loopback = true takes it where backends on that host are meant"

// nat64 is the well-known NAT64 prefix, whose addresses reach the IPv4
// address in their last four bytes; nat64Local the local-use one, whose
// operators may put it at any of several places (RFC 6052), so it is
// refused whole; a 6to4 address (sixToFour) reaches the IPv4 address in
// its bytes 2 to 5; an IPv4-compatible address (deprecated, RFC 4291
// 2.5.5.1, but still routed over a tunnel where one is set up) in its
// last four, ::1 and :: aside, and so does an IPv4-translated one (SIIT,
// RFC 2765).
var (
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	ipv4Compatible = netip.MustParsePrefix("::/96")
	ipv4Translated = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// metadataServices are the cloud metadata services outside link-local:
// the IPv6 addresses of those whose IPv4 address is link-local (AWS's
// instance metadata and EKS Pod Identity Agent, Google Cloud's, Scaleway's),
// Alibaba's, Azure's platform address (WireServer: the VM agent's goal
// state and extension settings) and Oracle Cloud Classic's.
var metadataServices = map[netip.Addr]bool{
	netip.MustParseAddr("fd00:ec2::254"):   true,
	netip.MustParseAddr("fd00:ec2::23"):    true,
	netip.MustParseAddr("fd20:ce::254"):    true,
	netip.MustParseAddr("fd00:42::42"):     true,
	netip.MustParseAddr("100.100.100.200"): true,
	netip.MustParseAddr("168.63.129.16"):   true,
	netip.MustParseAddr("192.0.0.192"):     true,
}

// checkHostName checks a host name's form.
func checkHostName(field, s string) error {
	if len(s) > maxHostName {
		return refuse(field, s, "longer than %d characters", maxHostName)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return refuse(field, s, "not an IP address or a host name")
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return refuse(field, s, "not an IP address or a host name (only a-z, 0-9, '-' and '.')")
			}
		}
	}
	// nginx reads "unix:PORT" as the path of a UNIX socket, relative to
	// its working directory, not as a host and port.
	if strings.EqualFold(s, "unix") {
		return refuse(field, s, "nginx reads unix:PORT as a UNIX socket's path")
	}
	// A resolver reads "0x50" or "10.1" as an IPv4 address (inet_aton);
	// a top-level label starts with a letter (RFC 3696 §2).
	if last := s[strings.LastIndexByte(s, '.')+1:]; !isLetter(last[0]) {
		return refuse(field, s, "not an IP address or a host name (the last label must start with a letter)")
	}
	return nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isDigitsAndDots(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// parseInt checks a decimal integer in lo..hi: digits only (no sign, no
// space, no leading zero).
func parseInt(field, s string, lo, hi int) (int, error) {
	if s == "" || len(s) > 10 || (s[0] == '0' && len(s) > 1) {
		return 0, refuse(field, s, "not a number in %d..%d", lo, hi)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, refuse(field, s, "not a number in %d..%d", lo, hi)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, refuse(field, s, "not a number in %d..%d", lo, hi)
	}
	return n, nil
}

// parseIdent checks a service id as an endpoint's name: 1..65 of a-z A-Z
// 0-9 _ . - , starting with a letter or digit. It is a valid HAProxy
// server name and the same token quoted or not.
func parseIdent(field, s string) (string, error) {
	if s == "" || len(s) > maxIdentifier {
		return "", refuse(field, s, "not 1..%d characters", maxIdentifier)
	}
	if !isAlnum(s[0]) {
		return "", refuse(field, s, "does not start with a letter or digit")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return "", refuse(field, s, "only a-z, A-Z, 0-9, '_', '.' and '-' are allowed")
		}
	}
	return s, nil
}

// parseName checks a name (ident, and endpointsBy's names): an
// identifier as parseIdent, without an empty part between dots ("..", or
// a "." at the end). It is a valid HAProxy server or backend name, nginx
// upstream name and nginx server name, also with a suffix such as
// ".example.com" (nginx refuses a server name holding "..").
func parseName(field, s string) (string, error) {
	if _, err := parseIdent(field, s); err != nil {
		return "", err
	}
	if strings.Contains(s, "..") || strings.HasSuffix(s, ".") {
		return "", refuse(field, s, "has an empty part between dots (\"..\", or a \".\" at the end), which nginx refuses in a server name")
	}
	return s, nil
}

// checkQuotable refuses what no quoting makes safe: invalid UTF-8, control
// bytes (NUL, newlines), bidirectional controls and invisible spaces (the
// config would read as other text) and very long values.
func checkQuotable(field, s string) error {
	if !utf8.ValidString(s) {
		return refuse(field, s, "not valid UTF-8")
	}
	if len(s) > maxQuoted {
		return refuse(field, s, "longer than %d bytes", maxQuoted)
	}
	prev := rune(-1)
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return refuse(field, s, "contains control characters")
		}
		// A space other than ASCII's (a no-break space, an em space, the
		// ideographic space) shows as a blank: the config would read as
		// two words where nginx and HAProxy read one ('api\u00a0' shows
		// as 'api ').
		if r != ' ' && unicode.Is(unicode.Zs, r) {
			return refuse(field, s, "contains a space other than ASCII's, which makes the config read as other text")
		}
		p := prev
		prev = r
		// A variation selector picks an emoji's or an ideograph's form.
		if printable.Hides(r) && !printable.VariationTaken(p, r) {
			// A right-to-left override shows "08:1.0.0.01" as
			// "10.0.0.1:80" to whoever reads the config.
			return refuse(field, s, "contains a bidirectional control or a character that shows as nothing or as a blank, which make the config read as other text")
		}
	}
	return nil
}

// nginxString quotes s as one nginx string argument: in double quotes,
// with " and \ escaped. A '$' is refused, since nginx expands variables
// inside quotes too. It is for an argument's place only: nginx takes the
// quotes off before it reads a map's source value or a server_name, so
// there "default" is still a keyword and "~..." a regular expression
// (nginxMapKey is for a map's keys; ident gives a server name).
func nginxString(s string) (string, error) {
	if err := checkQuotable("string", s); err != nil {
		return "", err
	}
	if strings.Contains(s, "$") {
		return "", refuse("string", s, "'$' would be expanded as an nginx variable")
	}
	return nginxQuoted(s), nil
}

// nginxQuoted is s in double quotes with " and \ escaped, which nginx's
// config reader gives back as the token s.
func nginxQuoted(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// nginxMapKey quotes s as a source value of an nginx map that matches the
// string s and nothing else (without regard to case, as nginx compares a
// map's strings). nginx takes the quotes off before the map reads the
// token, so a quoted "default", "include", "hostnames" or "volatile" is
// still that parameter and "~..." still a regular expression; a token that
// starts with a backslash is none of them, and the map takes the backslash
// off before it stores the string (ngx_http_map_module.c). So the key is
// written "\\s", which the config reader gives back as \s. A map with
// hostnames reads '*' and a leading '.' as wildcards (and refuses '..'), so
// they are refused, and so is the empty string, which would match every
// request whose source value is empty (no Host header). A '$' is allowed:
// a map does not expand variables in its source values.
func nginxMapKey(s string) (string, error) {
	const field = "map key"
	if err := checkQuotable(field, s); err != nil {
		return "", err
	}
	switch {
	case s == "":
		return "", refuse(field, s, "empty (it would match every request whose source value is empty, one without a Host header say)")
	case strings.Contains(s, "*"):
		return "", refuse(field, s, "'*' is a wildcard in an nginx map with hostnames")
	case strings.HasPrefix(s, "."):
		return "", refuse(field, s, "a leading '.' is a wildcard in an nginx map with hostnames")
	case strings.Contains(s, ".."):
		return "", refuse(field, s, "'..' is refused by an nginx map with hostnames")
	}
	return nginxQuoted(`\` + s), nil
}

// haproxyString quotes s as one HAProxy word: in single quotes, inside
// which HAProxy's parser interprets nothing (no '#' comment, no backslash
// escape, no environment variable). A single quote in s is refused, and so
// is a '%': many arguments (set-header, return, redirect, set-var-fmt) are
// log-format strings, which expand %[...] however quoted, into a request's
// headers or the process's environment. The empty string is refused too:
// HAProxy's keywords read an empty word as the end of their arguments, so
// in an ACL's list of values it silently drops the values after it.
//
// HAProxy takes the quotes off before its keywords read the words, so a
// quoted word is still read as syntax where a keyword looks for it: a
// leading '-' as an ACL's flag ('-m found' matches any value, '-f FILE'
// loads a file's patterns), and "{", "}", "!", "||", "or", "if" and
// "unless" as a condition's. Those are refused, in any case.
func haproxyString(s string) (string, error) {
	if err := checkQuotable("string", s); err != nil {
		return "", err
	}
	if s == "" {
		return "", refuse("string", s, "empty: HAProxy reads an empty word as the end of the arguments, dropping any after it")
	}
	if strings.HasPrefix(s, "-") {
		return "", refuse("string", s, "a leading '-': HAProxy reads it as an ACL's flag (-m, -f, -i), quoted or not")
	}
	if haproxyConditionWords[strings.ToLower(s)] {
		return "", refuse("string", s, "HAProxy reads this word as a condition's syntax, quoted or not")
	}
	if strings.Contains(s, "'") {
		return "", refuse("string", s, "a single quote cannot be quoted for HAProxy")
	}
	if strings.Contains(s, "%") {
		return "", refuse("string", s, "'%%' would be expanded in HAProxy's log-format arguments")
	}
	return "'" + s + "'", nil
}

// httpPath checks s as the path (and query) of an HTTP request, as a
// health check sends it (HAProxy's option httpchk, nginx's health_check
// uri), and returns it as it is: a word that needs no quotes in either
// config. It must start with a single '/' (a "//host" is another host to
// a redirect), hold only letters, digits and "-._~/?=&+,:@" (no space,
// which would end the request line's target and fail every check; no '%',
// which HAProxy's log-format arguments expand; no '$', ';', '#' or quote,
// which the configs read), no "." or ".." segment (servers and proxies
// resolve them differently), and be at most 1024 bytes.
func httpPath(s string) (string, error) {
	const field = "path"
	switch {
	case !strings.HasPrefix(s, "/"):
		return "", refuse(field, s, "does not start with '/'")
	case strings.HasPrefix(s, "//"):
		return "", refuse(field, s, "starts with '//', which names another host")
	case len(s) > maxQuoted:
		return "", refuse(field, s, "longer than %d bytes", maxQuoted)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isAlnum(c), strings.IndexByte("-._~/?=&+,:@", c) >= 0:
		default:
			// Which character is not said: the path may be a secret's
			// (a token in its query).
			return "", refuse(field, s, "byte %d is not a letter, a digit or one of -._~/?=&+,:@", i+1)
		}
	}
	path, _, _ := strings.Cut(s, "?")
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return "", refuse(field, s, "has a %q segment", seg)
		}
	}
	return s, nil
}

// haproxyConditionWords are the words HAProxy's condition parser reads as
// syntax (an anonymous ACL's braces, negation, "or"; where a condition
// starts) when it meets them unquoted, as it meets a quoted one.
var haproxyConditionWords = map[string]bool{"{": true, "}": true, "!": true, "||": true, "or": true, "if": true, "unless": true}

// toEndpoint checks and parses a service's id, address, port and weight.
func toEndpoint(s registry.Service, rules addrRules) (Endpoint, *RefusedError) {
	e := Endpoint{Service: s}
	var err error
	if e.Name, err = parseIdent("id", s.ID); err != nil {
		return e, err.(*RefusedError)
	}
	field, addr := MetaIP, s.Metadata[MetaIP]
	if addr == "" && s.Metadata[MetaHost] != "" {
		field, addr = MetaHost, s.Metadata[MetaHost]
	}
	if addr == "" {
		return e, refuse(MetaIP, "", "missing (set metadata %q or %q)", MetaIP, MetaHost)
	}
	if e.Address, err = parseAddress(field, addr, rules); err != nil {
		return e, err.(*RefusedError)
	}
	port, ok := s.Metadata[MetaPort]
	if !ok {
		return e, refuse(MetaPort, "", "missing")
	}
	if e.Port, err = parseInt(MetaPort, port, 1, 65535); err != nil {
		return e, err.(*RefusedError)
	}
	if w, ok := s.Metadata[MetaWeight]; ok {
		if e.Weight, err = parseInt(MetaWeight, w, 1, maxWeight); err != nil {
			return e, err.(*RefusedError)
		}
	}
	return e, nil
}

// Refusal is a service left out of a render because its data was refused,
// a metadata value metaAs refused (the service kept, with the default), or
// a configuration value configAs refused (and used the default for).
type Refusal struct {
	Template string `json:"template"`
	// Service is the service's id (cut to 64 characters); empty for a
	// configuration value, whose id (cut so) is Configuration.
	Service       string `json:"service,omitempty"`
	Configuration string `json:"configuration,omitempty"`
	// Field is the service's field refused, "metadata" (metaAs) or
	// "configuration".
	Field string `json:"field"`
	// Reason says why, quoting a service's value; a configuration
	// value's it leaves out (it may be a secret, and /healthz and the
	// status page have no login).
	Reason string `json:"reason"`
	// DefaultUsed: the service was not left out; the template's default
	// took the refused value's place (metaAs).
	DefaultUsed bool `json:"default_used,omitempty"`
}

// configurationField is the Field of a configuration value's refusal.
const configurationField = "configuration"

// OfConfiguration reports whether r is a configuration value's refusal
// (a service always has an id).
func (r Refusal) OfConfiguration() bool { return r.Service == "" }

// safeFuncs are the functions that turn registry text into config tokens:
// the value functions and those that take services.
func (st *execState) safeFuncs() map[string]any {
	fm := st.valueFuncs()
	fm["endpoints"], fm["endpoint"], fm["endpointsBy"] = st.endpoints, st.endpoint, st.endpointsBy
	fm["endpointsByExact"] = st.endpointsByExact
	fm["configAs"], fm["metaAs"] = st.configAs, st.metaAs
	return fm
}

// valueFuncs are the value functions, which check one value: a template's
// and configAs's by name.
func (st *execState) valueFuncs() map[string]any {
	// Their errors withhold the value (withhold).
	str := func(f func(string) (string, error)) func(string) (string, error) {
		return func(s string) (string, error) {
			v, err := f(s)
			return v, withhold(err)
		}
	}
	integer := func(field string, lo, hi int) func(string) (int, error) {
		return func(s string) (int, error) {
			n, err := parseInt(field, s, lo, hi)
			return n, withhold(err)
		}
	}
	return map[string]any{
		"number": func(lo, hi int, s string) (int, error) {
			return integer("number", lo, hi)(s)
		},
		"addr": func(s string) (Address, error) {
			a, err := parseAddress("address", s, st.addrs)
			return a, withhold(err)
		},
		"port":   integer("port", 1, 65535),
		"weight": integer("weight", 1, maxWeight),
		"ident": str(func(s string) (string, error) {
			return parseName("identifier", s)
		}),
		"nginxString":   str(nginxString),
		"nginxMapKey":   str(nginxMapKey),
		"haproxyString": str(haproxyString),
		"httpPath":      str(httpPath),
	}
}

// configAs is the configuration value id checked by the value function
// fn (with its integer arguments), or def checked so when the value does
// not exist or is refused. A refused value is reported as a refused
// service is, naming the value but not quoting it, and with on_refused =
// "fail" fails the render: one bad value does not hold every later change
// of the group back. The template's own mistakes fail the render whatever
// the registry holds: a function that is not a value function (or that
// function_denylist names), wrong arguments, a refused def.
func (st *execState) configAs(id, def, fn string, args ...any) (any, error) {
	check, fallback, err := st.checker("configAs", fn, args, def, func() string { return shown(id) })
	if err != nil {
		return nil, err
	}
	v, ok := st.snap.Config(id)
	out, why, err := checkValue(check, fn, v, ok, fallback)
	if why == "" || err != nil {
		return out, err
	}
	if st.failOnRefused {
		return nil, fmt.Errorf("configuration value %s %s", shown(id), why)
	}
	st.refused = append(st.refused, Refusal{Configuration: cut(id), Field: configurationField, Reason: why})
	return out, nil
}

// metaAs is the metadata value key of a service (a Service, or an
// Endpoint's) checked by the value function fn, or def checked so when
// the service has no such key, or fn refuses its value: configAs for a
// service's own metadata. A refused value is reported as a refused
// service is, quoting it (a service's data names it), and the service
// stays in the render with def; with on_refused = "fail" the render
// fails. So one service's bad value (max_conns=lots) holds no other
// service's change back, as it does given to fn straight.
func (st *execState) metaAs(s any, key, def, fn string, args ...any) (any, error) {
	check, fallback, err := st.checker("metaAs", fn, args, def, func() string { return "metadata " + shown(key) })
	if err != nil {
		return nil, err
	}
	svc, ok, err := serviceOf("metaAs", s, true)
	if !ok {
		return fallback, err
	}
	v, ok := svc.Metadata[key]
	out, why, err := checkValue(check, fn, v, ok, fallback)
	if why == "" || err != nil {
		return out, err
	}
	if st.failOnRefused {
		return nil, fmt.Errorf("service %s: metadata %s %s %s", shown(svc.ID), shown(key), shown(v), why)
	}
	st.refused = append(st.refused, Refusal{Service: cut(svc.ID), Field: metadataField, DefaultUsed: true,
		Reason: fmt.Sprintf("%s %s %s; the template's default %s is used", shown(key), shown(v), why, shown(def))})
	return out, nil
}

// checkValue is the value v checked, or fallback when there is none (!ok)
// or check refuses it; why, when it was refused, says why.
func checkValue(check func(string) (any, error), fn, v string, ok bool, fallback any) (out any, why string, err error) {
	if !ok {
		return fallback, "", nil
	}
	out, err = check(v)
	if err == nil {
		return out, "", nil
	}
	var refused *RefusedError
	if !errors.As(err, &refused) {
		return out, "", err
	}
	return fallback, fmt.Sprintf("refused by %s: %s", fn, refused.Reason), nil
}

// metadataField is the Field of a metadata value's refusal by metaAs
// (the key, registry data a template may range over, is in the reason:
// Field is a metric's label).
const metadataField = "metadata"

// checker is the value function fn named in a call of caller (configAs,
// metaAs), with its integer arguments, as a check of one value, and the
// default (def, of the value what names) checked by it. The template's
// own mistakes are errors: fn not a value function or denied, wrong
// arguments, a refused default (quoted: it is the template's, no secret).
// A render keeps the checkers it made by function, arguments and
// default: a template calls metaAs once a service, with the same ones.
func (st *execState) checker(caller, fn string, args []any, def string, what func() string) (check func(string) (any, error), fallback any, err error) {
	key, keyed := checkerKeyOf(fn, def, args)
	if c, ok := st.checkers[key]; keyed && ok {
		return c.check, c.fallback, nil
	}
	if st.values == nil {
		st.values = st.valueFuncs() // once a render
	}
	value, ok := st.values[fn]
	if !ok {
		return nil, nil, fmt.Errorf("%s: %q is not a value function (%s)", caller, fn, strings.Join(slices.Sorted(maps.Keys(st.values)), ", "))
	}
	if slices.Contains(st.denied, fn) {
		return nil, nil, fmt.Errorf("%s: %s is in function_denylist", caller, fn)
	}
	if n := reflect.TypeOf(value).NumIn() - 1; len(args) != n {
		return nil, nil, fmt.Errorf("%s: %s takes %d integer arguments after its name, not %d", caller, fn, n, len(args))
	}
	ints := make([]int, len(args))
	for i, a := range args {
		v, ok := toInt(a)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %s's argument %d, %v (%T), is not an integer that fits an int", caller, fn, i+1, a, a)
		}
		ints[i] = v
	}
	check = bindValue(value, ints)
	checkDefault := check
	if fn == "addr" { // the default is the template's: loopback is its author's to choose
		checkDefault = func(s string) (any, error) {
			a, err := parseAddress("address", s, addrRules{hostnames: st.addrs.hostnames, loopback: true})
			return a, withhold(err)
		}
	}
	if fallback, err = checkDefault(def); err != nil {
		if r, ok := err.(*RefusedError); ok {
			err = refuse(r.Field, def, "%s", r.Reason)
		}
		return nil, nil, fmt.Errorf("%s: the default of %s: %w", caller, what(), err)
	}
	if keyed {
		if st.checkers == nil {
			st.checkers = map[checkerKey]boundChecker{}
		}
		st.checkers[key] = boundChecker{check, fallback}
	}
	return check, fallback, nil
}

// checkerKey is what makes a checker: a value function, its integer
// arguments (no value function takes more than two) and the default.
type checkerKey struct {
	fn, def string
	n       int
	args    [2]int
}

// boundChecker is a checker made, and its default checked.
type boundChecker struct {
	check    func(string) (any, error)
	fallback any
}

// checkerKeyOf is the key of a checker, and false for arguments a key
// cannot hold (the call then fails on them). An integer argument of any
// kind is keyed as the int the checker is made with, so sprig's int64
// shares a checker with a constant.
func checkerKeyOf(fn, def string, args []any) (checkerKey, bool) {
	k := checkerKey{fn: fn, def: def, n: len(args)}
	if len(args) > len(k.args) {
		return k, false
	}
	for i, a := range args {
		v, ok := toInt(a)
		if !ok {
			return k, false
		}
		k.args[i] = v
	}
	return k, true
}

// bindValue is the value function value called with ints first, as a
// check of one value. Every value function has one of the types below:
// another is a mistake in valueFuncs, and panics.
func bindValue(value any, ints []int) func(string) (any, error) {
	switch f := value.(type) {
	case func(string) (string, error):
		return func(s string) (any, error) { return f(s) }
	case func(string) (int, error):
		return func(s string) (any, error) { return f(s) }
	case func(string) (Address, error):
		return func(s string) (any, error) { return f(s) }
	case func(int, int, string) (int, error):
		lo, hi := ints[0], ints[1]
		return func(s string) (any, error) { return f(lo, hi, s) }
	}
	panic(fmt.Sprintf("render: value function of type %T, which bindValue does not know", value))
}

// toInt is an integer template argument of any integer kind (constants
// are int; sprig's arithmetic gives int64) as an int.
func toInt(a any) (int, bool) {
	switch v := reflect.ValueOf(a); v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := v.Int()
		return int(n), n >= math.MinInt && n <= math.MaxInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n := v.Uint()
		return int(n), n <= math.MaxInt
	}
	return 0, false
}

// endpoints turns a list of services into endpoints, leaving out (and
// reporting) each service whose data is refused.
func (st *execState) endpoints(list []registry.Service) ([]Endpoint, error) {
	out := make([]Endpoint, 0, len(list))
	for _, s := range list {
		e, err := st.endpoint(s)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, *e)
		}
	}
	st.watchFrom(list, "endpoints (refused services left out)", len(out), idsOf(endpointID, out))
	return out, nil
}

func endpointID(e Endpoint) string { return e.Service.ID }

// endpointsBy groups the endpoints of a list by a metadata key whose value
// is checked by ident (a backend name, say). A service without the key is
// left out silently, one whose value or data is refused is reported. Names
// that differ only in case are one name to nginx, whose whole config two
// such upstreams fail (a service could so freeze every other's): of such
// spellings one is kept and the services of the others are refused and
// reported. The one kept is the one the template remembers (spellings.go)
// while a good service has it, so that a service registered with another
// spelling cannot take a name, and its traffic, from the services already
// behind it; else the all-lowercase one, else the first in the list. Only
// services whose data is good choose the spelling: one with a refused
// address cannot take its name away from the others.
func (st *execState) endpointsBy(key string, list []registry.Service) (map[string][]Endpoint, error) {
	return st.groupEndpoints("endpointsBy", key, list, true)
}

// endpointsByExact is endpointsBy for a config whose names tell case
// apart, as HAProxy's backends do: names that differ only in case are
// names of their own, so a service cannot keep another's out by
// registering a spelling of its name first (a backend "API" is svc_API,
// which no frontend of the operator's names, and the services of "api"
// stay in svc_api). Nothing is remembered.
func (st *execState) endpointsByExact(key string, list []registry.Service) (map[string][]Endpoint, error) {
	return st.groupEndpoints("endpointsByExact", key, list, false)
}

// groupEndpoints is endpointsBy (fold) or endpointsByExact, called fn.
func (st *execState) groupEndpoints(fn, key string, list []registry.Service, fold bool) (map[string][]Endpoint, error) {
	type checked struct {
		e       Endpoint
		refused *RefusedError
	}
	checks := make([]checked, len(list))
	// The spelling kept for each name in lowercase, and the names of
	// more than one spelling.
	kept, rivals := map[string]string{}, map[string]bool{}
	for i, s := range list {
		v, ok := s.Metadata[key]
		if !ok {
			continue
		}
		c := &checks[i]
		if _, err := parseName(key, v); err != nil {
			c.refused = err.(*RefusedError)
			continue
		}
		if c.e, c.refused = toEndpoint(s, st.addrs); c.refused != nil || !fold {
			continue
		}
		folded := strings.ToLower(v)
		k, seen := kept[folded]
		if !seen {
			kept[folded] = v
			continue
		}
		if k == v {
			continue
		}
		rivals[folded] = true
		// Two spellings: the one remembered, else the lowercase one.
		prev := st.prevSpellings.remembered(spellingKey(key, folded))
		if k != prev && (v == prev || v == folded) {
			kept[folded] = v
		}
	}
	if fold && st.spellings == nil {
		st.spellings = spellings{}
	}
	for folded, v := range kept {
		st.spellings.choose(st.prevSpellings, spellingKey(key, folded), v, st.now)
	}
	for folded := range rivals {
		st.spellings.contest(spellingKey(key, folded))
	}
	out := map[string][]Endpoint{}
	n := 0
	for i, s := range list {
		v, ok := s.Metadata[key]
		if !ok {
			continue
		}
		refused := checks[i].refused
		if k := kept[strings.ToLower(v)]; fold && refused == nil && k != v {
			refused = refuse(key, v, "differs from %q only in case, which nginx does not tell apart", k)
		}
		if refused != nil {
			if err := st.report(s, refused); err != nil {
				return nil, err
			}
			continue
		}
		out[v] = append(out[v], checks[i].e)
		n++
	}
	st.watchFrom(list, fmt.Sprintf("%s %q (refused services left out)", fn, key), n, func(yield func(string) bool) {
		for _, eps := range out {
			for id := range idsOf(endpointID, eps) {
				if !yield(id) {
					return
				}
			}
		}
	})
	return out, nil
}

// endpoint is one service's endpoint, or nil when its data is refused
// (reported). With on_refused = "fail", a refusal fails the render.
func (st *execState) endpoint(s any) (*Endpoint, error) {
	svc, ok, err := serviceOf("endpoint", s, false)
	if !ok {
		return nil, err
	}
	e, refused := toEndpoint(svc, st.addrs)
	if refused == nil {
		return &e, nil
	}
	return nil, st.report(svc, refused)
}

// serviceOf is the service given to the template function fn: a Service
// or a pointer to one (nil, as service gives for an id not found: none,
// !ok), and with endpoints an Endpoint's, or a pointer's. By value: a
// pointer to a copy would be an allocation a call, in a render's loops.
func serviceOf(fn string, s any, endpoints bool) (svc registry.Service, ok bool, err error) {
	switch v := s.(type) {
	case registry.Service:
		return v, true, nil
	case *registry.Service:
		if v == nil {
			return svc, false, nil
		}
		return *v, true, nil
	}
	if endpoints {
		switch v := s.(type) {
		case Endpoint:
			return v.Service, true, nil
		case *Endpoint:
			if v == nil {
				return svc, false, nil
			}
			return v.Service, true, nil
		}
		return svc, false, fmt.Errorf("%s: %T is not a service or an endpoint", fn, s)
	}
	return svc, false, fmt.Errorf("%s: %T is not a service", fn, s)
}

// report records a service left out, or with on_refused = "fail" returns
// the error that fails the render.
func (st *execState) report(s registry.Service, refused *RefusedError) error {
	if st.failOnRefused {
		return fmt.Errorf("service %s: %w", shown(s.ID), refused)
	}
	st.refused = append(st.refused, Refusal{Service: cut(s.ID), Field: refused.Field, Reason: refused.Error()})
	return nil
}

// render executes one template of g and reports it: the renders metric by
// result, and each service it left out, or value whose default it used (a
// log line naming the service or value and the field, the refusals
// metric, and the group's line in /healthz). A
// render min_instances refused returns its output with the *GuardError.
func (r *Renderer) render(ctx context.Context, g *Group, t *Template, snap *watcher.Snapshot) ([]byte, error) {
	r.loadSpellings(t)
	out, refused, err := t.execute(ctx, snap)
	var guard *GuardError
	switch {
	case errors.As(err, &guard):
		r.Metrics.renders.WithLabelValues(t.Name(), "guard").Inc()
	case err != nil:
		r.Metrics.renders.WithLabelValues(t.Name(), "error").Inc()
	default:
		r.Metrics.renders.WithLabelValues(t.Name(), "ok").Inc()
	}
	if err != nil && guard == nil {
		return nil, err
	}
	// A render min_instances refused is reported too: a pass installs it
	// when there is no old file to keep.
	fresh := r.Health.recordRefused(g.Name, t.Name(), refused)
	for i, ref := range fresh {
		if i == maxLoggedRefused {
			r.Log.Warn("more refusals in the render: services left out, or metadata or configuration values whose default is used (see /healthz)", "template", t.Name(), "group", g.Name,
				"more", len(fresh)-i)
			break
		}
		if ref.OfConfiguration() {
			r.Log.Warn("configuration value refused: the template's default is used", "template", ref.Template, "group", g.Name,
				"configuration", ref.Configuration, "reason", ref.Reason)
			continue
		}
		if ref.DefaultUsed {
			r.Log.Warn("metadata value refused: the template's default is used for the service", "template", ref.Template, "group", g.Name,
				"service", ref.Service, "reason", ref.Reason)
			continue
		}
		r.Log.Warn("service left out of the render: its data was refused", "template", ref.Template, "group", g.Name,
			"service", ref.Service, "field", ref.Field, "reason", ref.Reason)
	}
	for _, ref := range refused {
		r.Metrics.refused.WithLabelValues(ref.Template, ref.Field).Inc()
	}
	return out, err
}

// maxLoggedRefused caps the refusals one render logs one by one.
const maxLoggedRefused = 100

// recordRefused replaces a template's refusals in its group's health, and
// returns those its previous render did not have: only they are logged, so
// that a service refused render after render is logged once.
func (h *Health) recordRefused(group, template string, refused []Refusal) []Refusal {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.group(group)
	if g.refused == nil {
		g.refused = map[string][]Refusal{}
	}
	before := make(map[Refusal]bool, len(g.refused[template]))
	for _, ref := range g.refused[template] {
		before[ref] = true
	}
	var fresh []Refusal
	for _, ref := range refused {
		if !before[ref] {
			fresh = append(fresh, ref)
		}
	}
	if len(refused) == 0 {
		delete(g.refused, template)
	} else {
		g.refused[template] = refused
	}
	g.listRefused()
	return fresh
}

// listRefused makes the list /healthz shows of g's refusals: the first
// maxHealthRefused, by template.
func (g *GroupHealth) listRefused() {
	g.Refused, g.RefusedCount = nil, 0
	for _, name := range slices.Sorted(maps.Keys(g.refused)) {
		list := g.refused[name]
		g.RefusedCount += len(list)
		if room := maxHealthRefused - len(g.Refused); room > 0 {
			g.Refused = append(g.Refused, list[:min(room, len(list))]...)
		}
	}
}
