// Package cliflags parses the command lines of svcreg and the wrapper with
// the standard flag package's FlagSets, written the way the documentation
// writes them: --name value or --name=value (one dash works too), and
// lists them the same way in --help.
package cliflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/svcreg/svcreg/internal/printable"
	"github.com/svcreg/svcreg/internal/suggest"
)

// New returns an empty flag set that prints nothing by itself: Parse
// returns the mistakes, and the command prints its usage on flag.ErrHelp.
func New(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// Parse sets fs's flags from args and returns the positional arguments.
// "--" ends the flags. With interspersed, flags may also come between and
// after the positional arguments; without, the first positional argument
// ends them (it starts a command to run). --help and -h, unless fs
// defines them, return flag.ErrHelp; after a positional argument they are
// a mistake (an argument that starts with '-' belongs after "--"). A
// mistake is an error that names the flag as the usage does (Name), its
// characters that do not print escaped.
func Parse(fs *flag.FlagSet, args []string, interspersed bool) ([]string, error) {
	var positional []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(positional, args[i+1:]...), nil
		}
		if len(arg) < 2 || arg[0] != '-' {
			if !interspersed {
				return append(positional, args[i:]...), nil
			}
			positional = append(positional, arg)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(arg[1:], "-"), "=")
		if name == "" || name[0] == '-' || name[0] == '=' {
			// Not the value: it may be a secret (---api-key=…).
			shown, _, cut := strings.Cut(arg, "=")
			if cut {
				shown += "=…"
			}
			return nil, fmt.Errorf("bad flag syntax: %s", printable.Text(shown))
		}
		f := fs.Lookup(name)
		if f == nil {
			if name == "help" || name == "h" {
				if len(positional) > 0 {
					// A script's argument from the registry (a
					// configuration value "-help"): a usage error, not
					// the usage and success with nothing done.
					// The argument is not quoted: it may be a secret
					// value.
					return nil, fmt.Errorf("%s after an argument: ask for help before any argument, and put -- before arguments that may start with '-' (values from the registry)", Name(name))
				}
				return nil, flag.ErrHelp
			}
			// The name may come from the registry, through a script:
			// escaped, so that it cannot drive the terminal.
			return nil, fmt.Errorf("unknown flag %s%s", printable.Text(Name(name)), hint(fs, name))
		}
		if !hasValue {
			if isBool(f) {
				value = "true"
			} else if i+1 < len(args) {
				i++
				value = args[i]
			} else {
				return nil, fmt.Errorf("flag needs an argument: %s", Name(name))
			}
		}
		if err := fs.Set(name, value); err != nil {
			return nil, fmt.Errorf("invalid value %q for flag %s: %w", value, Name(name), wanted(f, err))
		}
	}
	return positional, nil
}

// hint suggests fs's flags close to the unknown name, as " (did you
// mean --listen?)", or "".
func hint(fs *flag.FlagSet, name string) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	close := suggest.Close(name, names)
	for i, n := range close {
		close[i] = Name(n)
	}
	if q := suggest.Question(close); q != "" {
		return " (" + q + ")"
	}
	return ""
}

// Name is how usage and messages write a flag: --name, or -n for a
// one-letter one.
func Name(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// wanted turns the flag package's "parse error" into what the flag
// takes; other errors (a Value's own, "value out of range") stay.
func wanted(f *flag.Flag, err error) error {
	if err.Error() != "parse error" {
		return err
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return err
	}
	switch g.Get().(type) {
	case time.Duration:
		return errors.New("give a duration with its unit, such as 30s, 2m or 1h30m")
	case int, int64, uint, uint64:
		return errors.New("give a whole number")
	case float64:
		return errors.New("give a number")
	case bool:
		return errors.New("give true or false")
	}
	return err
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Secret names the flags whose values are secrets: their defaults, which
// may come from the environment, are never shown.
var Secret = map[string]bool{"token": true, "api-key": true, "password": true}

// Listing says which flags Print lists, and how.
type Listing struct {
	// Only keeps the flags it returns true for; nil keeps them all.
	Only func(*flag.Flag) bool
	// Short maps a flag to its one-letter alias; both are listed on one
	// line ("-o, --output"), and the alias is not listed apart.
	Short map[string]string
	// NoDefaults lists no defaults (they come from the environment).
	NoDefaults bool
}

// Print lists fs's flags in alphabetical order as the documentation
// writes them, each with its usage and, unless it is empty, false, zero or
// secret, its default.
func Print(w io.Writer, fs *flag.FlagSet, l Listing) {
	alias := map[string]bool{}
	for _, s := range l.Short {
		alias[s] = true
	}
	fs.VisitAll(func(f *flag.Flag) {
		if alias[f.Name] || (l.Only != nil && !l.Only(f)) {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		line := "  " + Name(f.Name)
		if s, ok := l.Short[f.Name]; ok {
			line = "  " + Name(s) + ", " + Name(f.Name)
		}
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		usage = strings.ReplaceAll(usage, "\n", "\n      ")
		if !l.NoDefaults && !Secret[f.Name] {
			switch f.DefValue {
			case "", "false", "0", "0s", "[]":
			default:
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
		}
		fmt.Fprintf(w, "      %s\n", usage)
	})
}
