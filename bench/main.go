// Command bench measures the invalidator daemon end to end: it builds the
// daemon binary, starts a throwaway PostgreSQL 15 and redis-server on
// 127.0.0.1 (internal/testsrv), runs the workloads (bulk, steady,
// unthrottled, huge, consistency, sinks, namespace, scale) against the real binary, and prints a table (or JSON)
// of throughput, latency, memory and CPU figures. The sinks workload also
// starts, one after the other, a nats-server, a nats-server with
// JetStream and a 3-master Redis Cluster. Everything it starts is
// torn down at the end, on error and on Ctrl-C.
//
//	go run ./bench [-json] [-duration 30s] [-workloads bulk,steady,unthrottled,huge,consistency,sinks,namespace,scale] [-sinks-duration 10s] [-out FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// a second Ctrl-C kills at once (children die with us: Pdeathsig)
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; what it started is stopped and removed")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a bad flag or argument (exit status 2).
type usageError string

func (e usageError) Error() string { return string(e) }

func usagef(format string, a ...any) error { return usageError(fmt.Sprintf(format, a...)) }

// workload names, in the order they run
const (
	wlBulk        = "bulk"
	wlSteady      = "steady"
	wlUnthrottled = "unthrottled"
	wlHuge        = "huge"
	wlConsistency = "consistency"
	wlSinks       = "sinks"
	wlNamespace   = "namespace"
	wlScale       = "scale"
)

// allWorkloads are the workloads in the order they run.
var allWorkloads = []string{wlBulk, wlSteady, wlUnthrottled, wlHuge, wlConsistency, wlSinks, wlNamespace, wlScale}

// options are the command-line flags.
type options struct {
	json        bool
	duration    time.Duration
	workloads   []string
	out         string
	rates       []int
	scaleKeys   []int64
	bulkRows    int
	bulkRepeat  int
	hugeRows    int
	workMem     string
	appendfsync string
	perfDir     string
	keep        bool
	latencyDump string
	daemonEnv   []string
	consistency consistencyOptions
	// sinks workload
	sinks         []string
	sinksDuration time.Duration
	// namespaceKeys are the sizes of the namespace workload's keyspace
	namespaceKeys []int
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var workloads, rates, sinks, scaleKeys, nsKeys string
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "length of each steady and unthrottled run")
	fs.StringVar(&workloads, "workloads", strings.Join(allWorkloads, ","), "workloads to run, comma-separated")
	fs.StringVar(&o.out, "out", "", "also write the report to this file")
	fs.StringVar(&scaleKeys, "scale-keys", "0,1000000,10000000", "unrelated keys in Redis at each step of the scale workload, comma-separated")
	fs.StringVar(&rates, "rates", "2000,10000", "transactions per second of the steady runs")
	fs.StringVar(&nsKeys, "namespace-keys", "1000000,10000000", "unrelated keys in the namespace workload's Redis, one run per size, comma-separated")
	fs.IntVar(&o.bulkRows, "bulk-rows", 200_000, "rows of the bulk transaction (a multiple of 100)")
	fs.IntVar(&o.bulkRepeat, "bulk-repeat", 3, "runs of each bulk workload; the report shows the median run and the range")
	fs.IntVar(&o.hugeRows, "huge-rows", 1_000_000, "rows of the table and of the huge transaction (a multiple of 100); 100000 when neither bulk nor huge runs")
	fs.StringVar(&o.workMem, "decoding-work-mem", "64MB", "logical_decoding_work_mem of the bench database (PostgreSQL's default is 64MB; the test servers use 64kB)")
	fs.StringVar(&o.appendfsync, "redis-appendfsync", "off", "Redis persistence: off (appendonly no, as a cache usually runs), or appendonly yes with appendfsync always, everysec or no")
	fs.StringVar(&o.perfDir, "perf", "", "record a `perf` CPU profile of the daemon during each workload into this directory")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (daemon logs, rules, scripts)")
	fs.StringVar(&o.latencyDump, "latency-dump", "", "write each steady run's messages (commit time in µs since the epoch, latency in µs) to `PREFIX.<run>`, to see when a tail happened")
	fs.Func("daemon-env", "`NAME=VALUE` added to the daemon's environment (repeatable), e.g. GOMAXPROCS=1", func(v string) error {
		if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
			return fmt.Errorf("want NAME=VALUE, got %q", v)
		}
		o.daemonEnv = append(o.daemonEnv, v)
		return nil
	})
	o.consistency.flags(fs)
	fs.StringVar(&sinks, "sinks", strings.Join(allSinks, ","), "sinks of the sinks workload, comma-separated")
	fs.DurationVar(&o.sinksDuration, "sinks-duration", 10*time.Second, "length of each steady run of the sinks workload (and of its floor)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return o, usagef("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.workloads, err = names("-workloads", "workload", workloads, allWorkloads); err != nil {
		return o, err
	}
	if o.sinks, err = names("-sinks", "sink", sinks, allSinks); err != nil {
		return o, err
	}
	if o.rates, err = counts[int]("-rates", rates, 1); err != nil {
		return o, err
	}
	if o.scaleKeys, err = counts[int64]("-scale-keys", scaleKeys, 0); err != nil {
		return o, err
	}
	if o.namespaceKeys, err = counts[int]("-namespace-keys", nsKeys, 0); err != nil {
		return o, err
	}
	hugeSet := false
	fs.Visit(func(f *flag.Flag) { hugeSet = hugeSet || f.Name == "huge-rows" })
	if !hugeSet && !slices.Contains(o.workloads, wlBulk) && !slices.Contains(o.workloads, wlHuge) {
		if slices.Contains(o.workloads, wlSinks) || slices.Contains(o.workloads, wlScale) {
			o.hugeRows = o.bulkRows // the sinks' and scale's bulks need its rows, no more
		} else {
			o.hugeRows, o.bulkRows = 100_000, min(o.bulkRows, 100_000) // loading a million rows would take most of the run
		}
	}
	if err := o.consistency.check(); err != nil {
		return o, err
	}
	switch {
	case !slices.Contains([]string{"off", "always", "everysec", "no"}, o.appendfsync):
		return o, usagef("-redis-appendfsync must be off, always, everysec or no")
	case o.bulkRepeat < 1 || o.bulkRepeat > 25:
		return o, usagef("-bulk-repeat must be between 1 and 25")
	case o.duration < time.Second:
		return o, usagef("-duration must be at least 1s")
	case o.sinksDuration < time.Second:
		return o, usagef("-sinks-duration must be at least 1s")
	case o.hugeRows < tenants || o.hugeRows%tenants != 0:
		return o, usagef("-huge-rows must be a positive multiple of %d", tenants)
	case o.bulkRows < tenants || o.bulkRows%tenants != 0 || o.bulkRows > o.hugeRows:
		return o, usagef("-bulk-rows must be a positive multiple of %d, at most -huge-rows", tenants)
	}
	return o, nil
}

// run is the whole suite: build, servers, workloads, report.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	lg := newProgress(stderr)
	rep := &report{Machine: describeMachine(ctx), Options: reportOptions(o)}

	dir, err := os.MkdirTemp("", "invalidator-bench-")
	if err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("chmod work directory: %w", err)
	}
	defer func() {
		if o.keep {
			lg.printf("work directory kept: %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()

	lg.printf("building the daemon")
	bin, err := buildDaemon(ctx, dir, o.perfDir != "")
	if err != nil {
		return err
	}
	lg.printf("starting PostgreSQL 15 and Redis, loading %d rows", o.hugeRows)
	srv, err := startServers(ctx, dir, o)
	if err != nil {
		return err
	}
	defer srv.close(lg)
	rep.Servers = srv.info

	s := &suite{opts: o, log: lg, dir: dir, bin: bin, srv: srv}
	if err := s.runWorkloads(ctx, rep); err != nil {
		return err
	}
	rep.Targets = checkTargets(rep)

	var buf strings.Builder
	if o.json {
		err = writeJSON(&buf, rep)
	} else {
		err = writeTable(&buf, rep)
	}
	if err != nil {
		return err
	}
	if _, err := io.WriteString(stdout, buf.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(buf.String()), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.out, err)
		}
	}
	return nil
}

// names parses a comma-separated list of names out of allowed (empty items
// are dropped).
func names(flagName, noun, value string, allowed []string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(value, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !slices.Contains(allowed, v) {
			return nil, usagef("%s: unknown %s %q (want %s)", flagName, noun, v, strings.Join(allowed, ", "))
		}
		out = append(out, v)
	}
	return out, nil
}

// counts parses a comma-separated list of integers of at least least.
func counts[T int | int64](flagName, value string, least int64) ([]T, error) {
	var out []T
	for _, v := range strings.Split(value, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < least {
			return nil, usagef("%s: %q is not an integer of at least %d", flagName, v, least)
		}
		out = append(out, T(n))
	}
	return out, nil
}
