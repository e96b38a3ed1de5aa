package config_test

import (
	"flag"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/config"
)

// runFlags returns the flags of run (every one), bound to c, silent.
func runFlags(c *config.Config) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.BindConnectionFlags(fs)
	c.BindRunFlags(fs)
	return fs
}

// variables returns every INVALIDATOR_* variable of Config with its field.
func variables(tb testing.TB) map[string]reflect.StructField {
	tb.Helper()
	out := map[string]reflect.StructField{}
	t := reflect.TypeFor[config.Config]()
	for i := range t.NumField() {
		if v := t.Field(i).Tag.Get("envconfig"); v != "" {
			out[v] = t.Field(i)
		}
	}
	if len(out) < 30 {
		tb.Fatalf("found %d variables in config.Config, want its tags", len(out))
	}
	return out
}

// sample is a flag value for a field of type t, different from its
// default d, and the value the field must then hold.
func sample(tb testing.TB, t reflect.Type, d reflect.Value) (string, any) {
	tb.Helper()
	switch t {
	case reflect.TypeFor[string]():
		return "flag-value", "flag-value"
	case reflect.TypeFor[bool]():
		return map[bool]string{true: "false", false: "true"}[d.Bool()], !d.Bool()
	case reflect.TypeFor[int]():
		return "7", 7
	case reflect.TypeFor[int64]():
		return "7", int64(7)
	case reflect.TypeFor[time.Duration]():
		return "7s", 7 * time.Second
	case reflect.TypeFor[[]string]():
		return "a,b", []string{"a", "b"}
	}
	tb.Fatalf("no sample for %s", t)
	return "", nil
}

// Every variable has a flag named after it, whose help names the
// variable, and that sets that very field: the flags cannot drift from
// the configuration.
func TestConfig_FlagForEveryVariable(t *testing.T) {
	for variable, field := range variables(t) {
		t.Run(variable, func(t *testing.T) {
			c := validConfig()
			fs := runFlags(c)
			name := config.FlagName(variable)
			f := fs.Lookup(name)
			if f == nil {
				t.Fatalf("no flag --%s", name)
			}
			if !strings.Contains(f.Usage, "(env "+variable+")") || strings.HasPrefix(f.Usage, " ") {
				t.Errorf("--%s help %q does not describe it and name %s", name, f.Usage, variable)
			}
			arg, want := sample(t, field.Type, reflect.ValueOf(c).Elem().FieldByIndex(field.Index))
			if err := fs.Parse([]string{"--" + name + "=" + arg}); err != nil {
				t.Fatalf("--%s=%s: %v", name, arg, err)
			}
			if got := reflect.ValueOf(c).Elem().FieldByIndex(field.Index).Interface(); !reflect.DeepEqual(got, want) {
				t.Errorf("--%s=%s set %s to %v, want %v", name, arg, field.Name, got, want)
			}
		})
	}
}

// The connection flags are the ones every command takes; a run flag is
// not among them.
func TestConfig_BindConnectionFlagsOnly(t *testing.T) {
	c := validConfig()
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	c.BindConnectionFlags(fs)
	for _, name := range []string{"postgres-url", "redis-url", "rules", "slot", "redis-tls-ca-file", "redis-sharded-pubsub"} {
		if fs.Lookup(name) == nil {
			t.Errorf("connection flags lack --%s", name)
		}
	}
	for _, name := range []string{"http-addr", "batch-max-keys", "nats-url", "nats-timeout"} {
		if fs.Lookup(name) != nil {
			t.Errorf("connection flags include the daemon's --%s", name)
		}
	}
}

// --help shows the defaults, which come from the environment: never a
// password.
func TestConfig_FlagDefaultsRedacted(t *testing.T) {
	c := validConfig()
	c.PostgresURL = "postgres://app:" + secret + "@db/app"
	c.NATSURL = "nats://u:" + secret + "@n:4222"
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var help strings.Builder
	fs.SetOutput(&help)
	c.BindConnectionFlags(fs)
	c.BindRunFlags(fs)
	fs.PrintDefaults()
	if strings.Contains(help.String(), secret) || !strings.Contains(help.String(), "postgres://app:xxxxx@db/app") {
		t.Errorf("help shows a password or no redacted default:\n%s", help.String())
	}
	if c.PostgresURL != "postgres://app:"+secret+"@db/app" {
		t.Errorf("PostgresURL = %q: redacting the help changed the setting", c.PostgresURL)
	}
}

// Every variable is documented in the README's configuration table, in a
// row of its own.
func TestConfig_EveryVariableInREADME(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no ## Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	for variable := range variables(t) {
		if !strings.Contains(section, "\n| `"+variable+"` |") {
			t.Errorf("README.md's configuration table has no row | `%s` |", variable)
		}
	}
}
