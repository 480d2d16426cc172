package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Every command reads its flags through newFlags and parse, so that they
// all behave alike: flags in one style (--name, --name=value; -name is
// read too), before or after the arguments; --help prints the command's
// usage and flags on standard output and exits 0; a bad flag is one line
// on standard error that says what is wrong and where the help is.

// helpError is what parse returns for --help (and a command of subcommands
// for its own --help): run prints the help on standard output and exits 0.
type helpError struct{ print func(io.Writer) }

func (h *helpError) Error() string { return "help requested" }
func (h *helpError) Unwrap() error { return flag.ErrHelp }

// helpText is the help of a command whose help is a fixed text.
func helpText(text string) error {
	return &helpError{print: func(w io.Writer) { fmt.Fprintln(w, strings.TrimRight(text, "\n")) }}
}

// subcommandHelp is the help of a command of subcommands: intro, then the
// help of each subcommand (what each returns when given --help).
func subcommandHelp(intro string, subs ...func([]string) error) error {
	var helps []*helpError
	for _, sub := range subs {
		var h *helpError
		if err := sub([]string{"--help"}); !errors.As(err, &h) {
			return fmt.Errorf("internal error: a subcommand did not answer --help: %v", err)
		}
		helps = append(helps, h)
	}
	return &helpError{print: func(w io.Writer) {
		fmt.Fprintln(w, strings.TrimRight(intro, "\n"))
		for _, h := range helps {
			fmt.Fprintln(w)
			h.print(w)
		}
	}}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// newFlags returns the flag set of 'writ SYNOPSIS', named name in its
// errors. The third argument is unused: the help goes to standard output
// (see helpError) and errors are returned.
func newFlags(name, synopsis string, _ io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: writ %s\n\nFlags:\n", synopsis)
		printFlags(w, fs)
	}
	return fs
}

// printFlags lists the flags of fs as --name TYPE, its help on the next
// line, and its default when it is not the zero value.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintln(w, line)
		fmt.Fprint(w, "      ", strings.ReplaceAll(usage, "\n", "\n      "))
		if !isZeroValue(f) {
			if typ == "string" {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
		}
		fmt.Fprintln(w)
	})
}

// isZeroValue reports whether the flag's default is its type's zero value,
// as the flag package decides it.
func isZeroValue(f *flag.Flag) bool {
	t := reflect.TypeOf(f.Value)
	var z reflect.Value
	if t.Kind() == reflect.Pointer {
		z = reflect.New(t.Elem())
	} else {
		z = reflect.Zero(t)
	}
	v, ok := z.Interface().(flag.Value)
	return ok && f.DefValue == v.String()
}

// parse sets the flags in args and returns the other arguments, in order.
// Flags may come before and after the arguments; "--" ends them. It
// returns a *helpError for --help and a usage error (exit status 2) for a
// flag that is not the command's or a value that does not parse.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(pos, args[i+1:]...), nil
		}
		if len(arg) < 2 || arg[0] != '-' {
			pos = append(pos, arg) // "-" is an argument too: standard input
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(arg[1:], "-"), "=")
		f := fs.Lookup(name)
		if f == nil && (name == "h" || name == "help") {
			return nil, &helpError{print: func(w io.Writer) { fs.SetOutput(w); fs.Usage() }}
		}
		if f == nil || name == "" || name[0] == '-' {
			return nil, flagError(fs, "unknown flag --%s", strings.TrimLeft(name, "-"))
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() && !hasValue {
			value = "true"
		} else if !hasValue {
			if i+1 == len(args) {
				return nil, flagError(fs, "--%s needs a value", name)
			}
			i++
			value = args[i]
		}
		if err := fs.Set(name, value); err != nil {
			return nil, flagError(fs, "--%s %q: %s", name, value, badValue(f, err))
		}
	}
	return pos, nil
}

// flagError is a usage error about the command line of fs.
func flagError(fs *flag.FlagSet, format string, a ...any) error {
	return usageError("%s; see 'writ %s --help'", fmt.Sprintf(format, a...), fs.Name())
}

// badValue says, in words, what a flag wants when its value did not parse.
func badValue(f *flag.Flag, err error) string {
	typ, _ := flag.UnquoteUsage(f)
	switch typ {
	case "":
		return "want true or false"
	case "int", "uint":
		return "want a whole number"
	case "float":
		return "want a number"
	case "duration":
		return "want a duration such as 90s, 15m or 2h"
	}
	return err.Error()
}
