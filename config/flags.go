package config

import (
	"flag"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// connectionFlags is the flag tag of the settings every command takes.
const connectionFlags = "connection"

// BindConnectionFlags registers the flags every command that loads the
// configuration takes: one per setting tagged flag:"connection", with the
// current values as defaults (so flags override the environment).
func (c *Config) BindConnectionFlags(fs *flag.FlagSet) { c.bindFlags(fs, true) }

// BindRunFlags registers the daemon's own flags: one per other setting.
func (c *Config) BindRunFlags(fs *flag.FlagSet) { c.bindFlags(fs, false) }

// FlagName returns the flag of an environment variable: the name without
// the prefix, lower case, dashes for underscores.
func FlagName(variable string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(variable, Prefix+"_"), "_", "-"))
}

// bindFlags registers a flag for each setting of one set, derived from the
// struct tags, so a new setting cannot lack its flag. A flag the FlagSet
// already has is left to its owner.
func (c *Config) bindFlags(fs *flag.FlagSet, connection bool) {
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		variable := sf.Tag.Get("envconfig")
		if variable == "" || (sf.Tag.Get("flag") == connectionFlags) != connection {
			continue
		}
		name := FlagName(variable)
		if fs.Lookup(name) != nil {
			continue
		}
		usage := sf.Tag.Get("desc") + " (env " + variable + ")"
		switch p := v.Field(i).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, name, *p, usage)
			if strings.HasSuffix(variable, "_URL") { // the default comes from the environment: no password in --help
				fs.Lookup(name).DefValue = RedactURL(*p)
			}
		case *bool:
			fs.BoolVar(p, name, *p, usage)
		case *int:
			fs.IntVar(p, name, *p, usage)
		case *int64:
			fs.Int64Var(p, name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, name, *p, usage)
		case *[]string:
			fs.Var(listValue{p}, name, usage)
		default:
			panic(fmt.Sprintf("config: %s is a %s, which bindFlags cannot parse: add the type there", sf.Name, sf.Type))
		}
	}
}

// listValue is a comma-separated flag.
type listValue struct{ dst *[]string }

func (l listValue) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l listValue) Set(s string) error {
	*l.dst = splitList(s)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
