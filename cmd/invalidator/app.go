package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/router"
)

// Exit statuses.
const (
	exitOK       = 0
	exitProblems = 1 // runtime failure, or `check` found problems
	exitUsage    = 2 // bad flag, variable or rules file
)

const usage = `invalidator keeps caches honest: it tails PostgreSQL logical replication,
deletes the Redis keys each committed row feeds and publishes invalidations.

Usage:
  invalidator <command> [flags]

Commands:
  run       run the daemon
  check     validate configuration and rules; with reachable servers, also the database side
  setup     create the publication and slot; print the GRANTs a non-superuser role needs
  status    slot, active pid, confirmed LSN, lag, journal range (--json)
  replay    re-invalidate after an incident (journal, table rows, or a tenant)
  explain   print the keys, patterns and messages one row change produces
  version   print the version

Every command takes --help. Configuration comes from INVALIDATOR_* environment
variables; flags override them. See README.md for the variables and rules file.
`

// command is one subcommand: it parses its own flags and returns an exit status.
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Main runs the command named by args[0] and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	commands := map[string]command{
		"run":     runCommand,
		"check":   checkCommand,
		"setup":   setupCommand,
		"status":  statusCommand,
		"replay":  replayCommand,
		"explain": explainCommand,
		"version": versionCommand,
	}
	redis.SetLogger(quietLibrary{}) // before any client: see quietLibrary
	if len(args) == 0 {
		_, _ = fmt.Fprint(stdout, usage)
		return exitOK
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		_, _ = fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		_, _ = fmt.Fprintf(stderr, "invalidator: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return cmd(ctx, args[1:], stdout, stderr)
}

// buildCommit is the commit `make build` stamps in (-ldflags -X), for
// builds without VCS information (GOFLAGS=-buildvcs=false, no .git in a
// container build). The linker sets it; nothing else writes it.
var buildCommit string

// version returns the module version and VCS revision the binary was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return strings.TrimSpace("unknown " + buildCommit)
	}
	v := bi.Main.Version
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " " + rev
		if dirty {
			v += "-dirty"
		}
	} else if buildCommit != "" {
		v += " " + buildCommit
	}
	return v + " " + bi.GoVersion
}

func versionCommand(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "invalidator version\n\nPrints the version.", stderr)
	if code, done := parse(fs, args, stdout); done {
		return code
	}
	_, _ = fmt.Fprintln(stdout, "invalidator", version())
	return exitOK
}

// newFlagSet returns a FlagSet that reports errors instead of exiting.
// Parsing prints nothing but the flag package's one-line error on stderr:
// parse prints the help itself, once, on stdout for --help.
func newFlagSet(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(fs.Output(), "%s\n\nFlags:\n", help)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; done is true when the command must return code now
// (--help, or a bad flag).
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	usage := fs.Usage
	fs.Usage = func() {} // the flag package would print the help on stderr, before our choice
	err := fs.Parse(args)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK, true
		}
		_, _ = fmt.Fprintf(fs.Output(), "run 'invalidator %s --help' for its flags\n", fs.Name())
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(fs.Output(), "invalidator %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, true
	}
	return exitOK, false
}

// setup holds what most commands start from.
type setup struct {
	cfg   *config.Config
	rules *router.Rules
}

// load reads the environment, parses flags (bind registers them), validates
// and loads the rules. done means return code now.
func load(name, help string, args []string, stdout, stderr io.Writer, bind func(*config.Config, *flag.FlagSet), validate func(*config.Config) error) (s setup, code int, done bool) {
	cfg, err := config.FromEnv()
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator %s: %v\n", name, err)
		return s, exitUsage, true
	}
	fs := newFlagSet(name, help, stderr)
	cfg.BindConnectionFlags(fs)
	if bind != nil {
		bind(cfg, fs)
	}
	if code, done := parse(fs, args, stdout); done {
		return s, code, true
	}
	if err := validate(cfg); err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator %s: %v\n", name, err)
		return s, exitUsage, true
	}
	rules, err := router.LoadRules(cfg.Rules)
	if err != nil {
		hint := ""
		if pe := (*os.PathError)(nil); errors.As(err, &pe) {
			hint = fmt.Sprintf(" (%s or --rules names the rules file)", config.Var("RULES"))
		}
		_, _ = fmt.Fprintf(stderr, "invalidator %s: %v%s\n", name, err, hint)
		return s, exitUsage, true
	}
	return setup{cfg: cfg, rules: rules}, exitOK, false
}

// newLogger builds the process logger: JSON or console on stderr.
func newLogger(cfg *config.Config, stderr io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, &config.Error{Var: config.Var("LOG_LEVEL"), Msg: err.Error()}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	ws := zapcore.AddSync(stderr)
	if f, ok := stderr.(*os.File); ok {
		ws = zapcore.Lock(f)
	}
	return zap.New(zapcore.NewCore(enc, ws, level)), nil
}
