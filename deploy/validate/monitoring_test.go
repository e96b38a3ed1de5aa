package validate

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

var alertsFile = filepath.Join(deployDir, "prometheus", "alerts.yaml")

// ruleFile is the Prometheus rule-file format (what promtool check rules
// reads), decoded strictly: an unknown or misspelt field is an error.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Limit    int    `json:"limit,omitempty"`
		Rules    []struct {
			Alert         string            `json:"alert,omitempty"`
			Record        string            `json:"record,omitempty"`
			Expr          string            `json:"expr"`
			For           *string           `json:"for,omitempty"`
			KeepFiringFor string            `json:"keep_firing_for,omitempty"`
			Labels        map[string]string `json:"labels,omitempty"`
			Annotations   map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// Prometheus's template functions, as stubs: enough to parse annotations.
var promTemplateFuncs = template.FuncMap{}

func init() {
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp",
		"toTime", "toDuration", "now", "pathPrefix", "externalURL", "title", "toUpper", "toLower", "match", "reReplaceAll",
		"graphLink", "tableLink", "sortByLabel", "strvalue", "label", "value", "first", "query", "args", "safeHtml",
		"parseDuration", "stripPort", "stripDomain"} {
		promTemplateFuncs[f] = func(...any) any { return nil }
	}
}

// TestAlertRules decodes the rule file strictly, parses every expression
// with Prometheus's own PromQL parser, every annotation as a template, and
// checks each alert's fields and metric names.
func TestAlertRules(t *testing.T) {
	var rf ruleFile
	if err := yaml.UnmarshalStrict([]byte(readFile(t, alertsFile)), &rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no groups", alertsFile)
	}
	alerts := map[string]bool{}
	groupNames := map[string]bool{}
	var exprs []string
	for _, g := range rf.Groups {
		if g.Name == "" || groupNames[g.Name] {
			t.Errorf("group name %q empty or not unique", g.Name)
		}
		groupNames[g.Name] = true
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without `alert` (recording rules are not expected here): %q", g.Name, r.Record)
				continue
			}
			where := "alert " + r.Alert
			if !model.LabelName(r.Alert).IsValidLegacy() {
				t.Errorf("%s: not a valid alert name", where)
			}
			if alerts[r.Alert] {
				t.Errorf("%s defined twice", where)
			}
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", where)
			}
			checkExpr(t, where, r.Expr)
			exprs = append(exprs, strings.Join(strings.Fields(r.Expr), " "))
			if r.For == nil {
				t.Errorf("%s: no `for` (write 0m if it must fire at once)", where)
			} else if _, err := model.ParseDuration(*r.For); err != nil {
				t.Errorf("%s: for %q: %v", where, *r.For, err)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: labels.severity %q: want critical, warning or info", where, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: annotations.%s missing", where, a)
				}
			}
			for k, v := range r.Annotations {
				if _, err := template.New(k).Funcs(promTemplateFuncs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + v); err != nil {
					t.Errorf("%s: annotation %s: %v", where, k, err)
				}
			}
		}
	}

	// The alerts the operators were promised.
	mustCover := map[string]*regexp.Regexp{
		"replication lag bytes": regexp.MustCompile(`invalidator_replication_lag_bytes\b`),
		"errors rising":         regexp.MustCompile(`rate\(invalidator_errors_total`),
		"no active replica":     regexp.MustCompile(`sum by \(job\) \(invalidator_role\{role="active"\}\) < 1`),
		"more than one active":  regexp.MustCompile(`sum by \(job\) \(invalidator_role\{role="active"\}\) > 1`),
		"stale last commit":     regexp.MustCompile(`time\(\) - invalidator_last_commit_timestamp_seconds`),
		"commit-to-publish p99": regexp.MustCompile(`histogram_quantile\(0\.99, .*invalidator_commit_to_publish_seconds_bucket`),
		"render failures":       regexp.MustCompile(`invalidator_render_failures_total`),
	}
	all := strings.Join(exprs, "\n")
	for what, re := range mustCover {
		if !re.MatchString(all) {
			t.Errorf("no alert covers %s (%s)", what, re)
		}
	}
	t.Logf("%d alerts: %v", len(alerts), sortedKeys(alerts))
}

var dashboardFile = filepath.Join(deployDir, "grafana", "invalidator-dashboard.json")

// grafanaVars stands in for Grafana's template variables so that the
// expressions parse as plain PromQL.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"${__rate_interval}", "5m",
	"$__interval", "1m",
	"${__interval}", "1m",
	"$__range", "1h",
	"${__range}", "1h",
)
var grafanaVar = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?`)

func substituteGrafanaVars(expr string) string {
	return grafanaVar.ReplaceAllString(grafanaVars.Replace(expr), ".*")
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	GridPos    *map[string]int `json:"gridPos"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func TestGrafanaDashboard(t *testing.T) {
	var d struct {
		Title         string  `json:"title"`
		UID           string  `json:"uid"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Query      any    `json:"query"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q uid %q", d.Title, d.UID)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d: want about 39", d.SchemaVersion)
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" && v.Definition != "" {
			// label_values(<selector>, label): check the selector's metric.
			m := regexp.MustCompile(`^label_values\((.*),\s*[a-z_]+\)$`).FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("variable %s: unexpected query %q", v.Name, v.Definition)
				continue
			}
			checkExpr(t, "variable "+v.Name, substituteGrafanaVars(m[1]))
		}
	}

	ids := map[int]string{}
	titles := []string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("%s: id not unique (also %q)", where, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil {
				t.Errorf("%s: no gridPos", where)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			titles = append(titles, p.Title)
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			if !strings.Contains(string(p.Datasource), "${datasource}") {
				t.Errorf("%s: datasource must be the ${datasource} variable, got %s", where, p.Datasource)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if refs[tg.RefID] || tg.RefID == "" {
					t.Errorf("%s: refId %q not unique", where, tg.RefID)
				}
				refs[tg.RefID] = true
				checkExpr(t, where+" "+tg.RefID, substituteGrafanaVars(tg.Expr))
			}
		}
	}
	walk(d.Panels)

	// The panels the operators were promised.
	for _, want := range []string{"Transactions/s", "Changes/s by table and op", "Keys deleted/s", "Messages published/s by sink",
		"Replication lag", "Commit-to-publish latency", "Batch size (transactions)", "Batch size (keys)", "Errors/s by kind",
		"Render failures/s by rule", "Role by replica"} {
		found := false
		for _, ti := range titles {
			if ti == want {
				found = true
			}
		}
		if !found {
			t.Errorf("no panel titled %q", want)
		}
	}
	t.Logf("%d panels", len(titles))
}

func TestMetricNamesExportedByDaemon(t *testing.T) { checkMetricsExported(t) }

// Guards: the expression check rejects what it must.
func TestCheckExprRejects(t *testing.T) {
	for _, e := range []string{
		`rate(invalidator_transaction_total[5m])`,      // misspelt
		`invalidator_commit_to_publish_seconds`,        // histogram without a series suffix
		`up{job="invalidator"}`,                        // not the daemon's
		`sum(rate({__name__=~"invalidator_.*"}[5m]))`,  // no metric name
		`sum(rate(invalidator_transactions_total[5m])`, // syntax
	} {
		if len(exprProblems(e)) == 0 {
			t.Errorf("accepted %s", e)
		}
	}
	if got := substituteGrafanaVars(`rate(x{job=~"$job", i=~"${instance}"}[$__rate_interval])`); got != `rate(x{job=~".*", i=~".*"}[5m])` {
		t.Errorf("substituteGrafanaVars: %s", got)
	}
}
