package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// Paths, relative to this package's directory (go test runs tests there).
const (
	repoRoot   = "../.."
	deployDir  = ".."
	k8sDir     = "../kubernetes"
	systemdDir = "../systemd"
)

// specEnv is every core variable (the first rows of the README's
// configuration table), with its default ("" = empty or required).
var specEnv = map[string]string{
	"INVALIDATOR_POSTGRES_URL":        "",
	"INVALIDATOR_REDIS_URL":           "",
	"INVALIDATOR_REDIS_CLUSTER_ADDRS": "",
	"INVALIDATOR_RULES":               "/etc/invalidator/rules.yaml",
	"INVALIDATOR_SLOT":                "invalidator",
	"INVALIDATOR_PUBLICATION":         "invalidator",
	"INVALIDATOR_CREATE_SLOT":         "true",
	"INVALIDATOR_HTTP_ADDR":           ":9187",
	"INVALIDATOR_LOG_LEVEL":           "info",
	"INVALIDATOR_LOG_FORMAT":          "json",
	"INVALIDATOR_NATS_URL":            "",
	"INVALIDATOR_NATS_JETSTREAM":      "false",
	"INVALIDATOR_JOURNAL":             "true",
	"INVALIDATOR_HEARTBEAT_INTERVAL":  "10s",
}

// extraEnv are the tuning settings config.go reads beyond the core ones.
var extraEnv = map[string]string{
	"INVALIDATOR_JOURNAL_MAXLEN":   "100000",
	"INVALIDATOR_MAX_KEYS_PER_TXN": "100000",
	"INVALIDATOR_BATCH_MAX_KEYS":   "10000",
	"INVALIDATOR_BATCH_MAX_TXNS":   "1000",
	"INVALIDATOR_BATCH_LINGER":     "0s",
	"INVALIDATOR_SHUTDOWN_TIMEOUT": "10s",
}

// knownEnv returns every INVALIDATOR_* variable with its default. When the
// daemon's config/config.go is present, it is the source of truth and must
// agree with specEnv; variables it adds are accepted.
func knownEnv(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range specEnv {
		out[k] = v
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "config", "config.go"))
	if err != nil {
		t.Logf("config/config.go not readable (%v): using the core variables and the known extras", err)
		for k, v := range extraEnv {
			out[k] = v
		}
		return out
	}
	tag := regexp.MustCompile("envconfig:\"([A-Z0-9_]+)\"(?:\\s+default:\"([^\"]*)\")?")
	fromCode := map[string]string{}
	for _, m := range tag.FindAllStringSubmatch(string(src), -1) {
		name := m[1]
		if !strings.HasPrefix(name, "INVALIDATOR_") {
			name = "INVALIDATOR_" + name
		}
		fromCode[name] = m[2]
	}
	if len(fromCode) == 0 {
		t.Fatalf("config/config.go: found no envconfig tags")
	}
	for k, v := range specEnv {
		cv, ok := fromCode[k]
		if !ok {
			t.Errorf("config/config.go does not read %s (a core variable)", k)
			continue
		}
		if cv != v {
			t.Errorf("config/config.go: %s default %q, the documented default is %q", k, cv, v)
		}
	}
	for k, v := range fromCode {
		out[k] = v
	}
	return out
}

// Metric names the daemon exports (ops/metrics.go). Histograms are queried
// through their _bucket, _sum and _count series.
var (
	plainMetrics = []string{
		"invalidator_transactions_total",
		"invalidator_changes_total",
		"invalidator_keys_deleted_total",
		"invalidator_messages_published_total",
		"invalidator_errors_total",
		"invalidator_replication_lag_bytes",
		"invalidator_confirmed_lsn",
		"invalidator_render_failures_total",
		"invalidator_wide_form_total",
		"invalidator_role",
		"invalidator_last_commit_timestamp_seconds",
	}
	histogramMetrics = []string{
		"invalidator_commit_to_publish_seconds",
		"invalidator_batch_size_transactions",
		"invalidator_batch_size_keys",
		"invalidator_apply_seconds",
	}
)

// checkMetricsExported asserts that every metric the dashboard and alerts
// may use is still registered by the daemon (ops/*.go), when its source is
// present: a renamed metric must not leave the monitoring silently empty.
func checkMetricsExported(t *testing.T) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, "ops", "*.go"))
	src := ""
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err == nil {
			src += string(b)
		}
	}
	if src == "" {
		t.Logf("ops/*.go not readable: cannot cross-check the metric names with the daemon")
		return
	}
	for _, m := range append(append([]string(nil), plainMetrics...), histogramMetrics...) {
		if !strings.Contains(src, `Name: "`+m+`"`) {
			t.Errorf("metric %s is no longer registered in ops/*.go", m)
		}
	}
}

func allowedSeries() map[string]bool {
	ok := map[string]bool{}
	for _, m := range plainMetrics {
		ok[m] = true
	}
	for _, h := range histogramMetrics {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			ok[h+s] = true
		}
	}
	return ok
}

var promParser = parser.NewParser(parser.Options{})

// metricNames parses a PromQL expression and returns the metric names its
// selectors use; a selector without a metric name is an error.
func metricNames(expr string) ([]string, error) {
	e, err := promParser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
		}
		if name == "" {
			bad = &selectorError{vs.String()}
			return nil
		}
		names = append(names, name)
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	sort.Strings(names)
	return names, nil
}

type selectorError struct{ sel string }

func (e *selectorError) Error() string { return "selector without a metric name: " + e.sel }

// exprProblems parses expr and returns what is wrong with it: a syntax
// error, no metric at all, or a metric the daemon does not export.
func exprProblems(expr string) []string {
	names, err := metricNames(expr)
	if err != nil {
		return []string{err.Error()}
	}
	if len(names) == 0 {
		return []string{"the expression selects no metric"}
	}
	var out []string
	ok := allowedSeries()
	for _, n := range names {
		if !ok[n] {
			out = append(out, fmt.Sprintf("unknown metric %q (not exported by the daemon)", n))
		}
	}
	return out
}

// checkExpr asserts that expr parses and selects only the daemon's metrics.
func checkExpr(t *testing.T, where, expr string) {
	t.Helper()
	for _, p := range exprProblems(expr) {
		t.Errorf("%s: %s\n  expr: %s", where, p, expr)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func trimComment(line string) string {
	if i := strings.Index(line, "#"); i >= 0 {
		return strings.TrimSpace(line[:i])
	}
	return strings.TrimSpace(line)
}
