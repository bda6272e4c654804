package cliflags

import (
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

type parsed struct {
	name  string
	count int
	dry   bool
	pos   []string
}

func parse(args []string, interspersed bool) (parsed, error) {
	var p parsed
	fs := New("x")
	fs.StringVar(&p.name, "name", "", "")
	fs.IntVar(&p.count, "count", 0, "")
	fs.BoolVar(&p.dry, "dry", false, "")
	fs.StringVar(&p.name, "n", "", "")
	fs.Duration("wait", 0, "")
	fs.Float64("ratio", 0, "")
	pos, err := Parse(fs, args, interspersed)
	p.pos = pos
	return p, err
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args         string
		interspersed bool
		want         parsed
	}{
		{"--name a --count=3 --dry", false, parsed{name: "a", count: 3, dry: true}},
		{"-name=a -count 3 -dry=false", false, parsed{name: "a", count: 3}},
		{"--name -a", false, parsed{name: "-a"}},
		{"--dry cmd --name a", false, parsed{dry: true, pos: []string{"cmd", "--name", "a"}}},
		{"--dry -- --name a", false, parsed{dry: true, pos: []string{"--name", "a"}}},
		{"one --name a two --dry", true, parsed{name: "a", dry: true, pos: []string{"one", "two"}}},
		{"one -- --dry", true, parsed{pos: []string{"one", "--dry"}}},
		{"- --dry", true, parsed{dry: true, pos: []string{"-"}}},
		{"-n b", true, parsed{name: "b"}},
	} {
		got, err := parse(strings.Fields(tt.args), tt.interspersed)
		if err != nil || got.name != tt.want.name || got.count != tt.want.count || got.dry != tt.want.dry || !slices.Equal(got.pos, tt.want.pos) {
			t.Errorf("Parse(%q, %v) = %+v, %v; want %+v", tt.args, tt.interspersed, got, err, tt.want)
		}
	}
}

// Mistakes name the flag as --help lists it.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ args, want string }{
		{"--nope", "unknown flag --nope"},
		{"--nam=x", "unknown flag --nam (did you mean --name?)"},
		{"--cuont 3", "unknown flag --cuont (did you mean --count?)"},
		{"-nope=1", "unknown flag --nope"},
		{"-x", "unknown flag -x"},
		{"--name", "flag needs an argument: --name"},
		{"--count three", `invalid value "three" for flag --count: give a whole number`},
		{"--count 99999999999999999999", `invalid value "99999999999999999999" for flag --count: value out of range`},
		{"--dry=maybe", `invalid value "maybe" for flag --dry: give true or false`},
		{"--wait 5", `invalid value "5" for flag --wait: give a duration with its unit, such as 30s, 2m or 1h30m`},
		{"--ratio half", `invalid value "half" for flag --ratio: give a number`},
		{"-n", "flag needs an argument: -n"},
		{"---name", "bad flag syntax: ---name"},
		{"---api-key=s3cret", "bad flag syntax: ---api-key=…"},
		{"--=x", "bad flag syntax: --=…"},
		// Registry text passed on by a script cannot drive the terminal.
		{"--x\x1b]0;owned\a\x1b[2J", `unknown flag --x\x1b]0;owned\a\x1b[2J`},
		{"---\u202ex", `bad flag syntax: ---\u202ex`},
		// Nor make a command print its usage and succeed.
		{"KEY -help", `--help after an argument: ask for help before any argument, and put -- before arguments that may start with '-' (values from the registry)`},
		{"web-1 --dry --help", `--help after an argument: ask for help before any argument, and put -- before arguments that may start with '-' (values from the registry)`},
	} {
		if _, err := parse(strings.Fields(tt.args), true); err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) = %v, want %q", tt.args, err, tt.want)
		}
	}
	for _, help := range []string{"--help", "-h", "-help"} {
		if _, err := parse([]string{"--dry", help, "--nope"}, true); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Parse(%s) = %v, want flag.ErrHelp", help, err)
		}
	}
}

func TestPrint(t *testing.T) {
	t.Parallel()
	fs := New("x")
	fs.String("output", "text", "output `format`")
	fs.String("o", "text", "short for --output")
	fs.String("token", "from-env", "a `token`")
	fs.Bool("dry", false, "print only,\nwrite nothing")
	fs.String("url", "http://env", "the `URL`")
	fs.Duration("wait", 0, "how long; 0 means the default")
	var b strings.Builder
	Print(&b, fs, Listing{Only: func(f *flag.Flag) bool { return f.Name != "url" }, Short: map[string]string{"output": "o"}})
	want := "  --dry\n      print only,\n      write nothing\n  -o, --output format\n      output format (default text)\n  --token token\n      a token\n  --wait duration\n      how long; 0 means the default\n"
	if b.String() != want {
		t.Errorf("Print:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	Print(&b, fs, Listing{Only: func(f *flag.Flag) bool { return f.Name == "url" }, NoDefaults: true})
	if want := "  --url URL\n      the URL\n"; b.String() != want {
		t.Errorf("Print without defaults:\n%s\nwant:\n%s", b.String(), want)
	}
}
