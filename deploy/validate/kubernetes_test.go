package validate

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	yamlv3 "gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	httpPort      = 9187
	rulesPath     = "/etc/invalidator/rules.yaml"
	kustomization = "kustomization.yaml"
)

// manifests is every object of deploy/kubernetes, decoded strictly.
type manifests struct {
	deployments     []*appsv1.Deployment
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	services        []*corev1.Service
	pdbs            []*policyv1.PodDisruptionBudget
	serviceAccounts map[string]*corev1.ServiceAccount
	files           map[string]int // file -> number of objects
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// splitDocs splits a multi-document YAML file, dropping empty documents.
func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range docSep.Split(string(b), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if trimComment(line) != "" {
				empty = false
				break
			}
		}
		if !empty {
			out = append(out, []byte(d))
		}
	}
	return out
}

// strict decodes one document into v, refusing unknown and duplicate fields.
func strict(doc []byte, v any) error { return yaml.UnmarshalStrict(doc, v) }

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{
		configMaps:      map[string]*corev1.ConfigMap{},
		secrets:         map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		files:           map[string]int{},
	}
	paths, err := filepath.Glob(filepath.Join(k8sDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		base := filepath.Base(p)
		if base == kustomization {
			continue
		}
		if ext := filepath.Ext(base); ext != ".yaml" && ext != ".yml" {
			t.Errorf("%s: only YAML manifests (and %s) belong in deploy/kubernetes", p, kustomization)
			continue
		}
		b := readFile(t, p)
		for i, doc := range splitDocs([]byte(b)) {
			where := fmt.Sprintf("%s#%d", base, i)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			var obj interface {
				GetName() string
				GetNamespace() string
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				obj = d
				m.deployments = append(m.deployments, d)
			case "v1 ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1 Secret":
				obj = &corev1.Secret{}
			case "v1 Service":
				s := &corev1.Service{}
				obj = s
				m.services = append(m.services, s)
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				obj = p
				m.pdbs = append(m.pdbs, p)
			case "v1 ServiceAccount":
				obj = &corev1.ServiceAccount{}
			default:
				t.Errorf("%s: unexpected object %q %q", where, tm.APIVersion, tm.Kind)
				continue
			}
			if err := strict(doc, obj); err != nil {
				t.Errorf("%s: strict decoding as %s: %v", where, tm.Kind, err)
				continue
			}
			if obj.GetName() == "" {
				t.Errorf("%s: metadata.name is empty", where)
			}
			if ns := obj.GetNamespace(); ns != "" {
				t.Errorf("%s: metadata.namespace %q: the manifests must stay namespace-agnostic", where, ns)
			}
			switch o := obj.(type) {
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Secret:
				m.secrets[o.Name] = o
			case *corev1.ServiceAccount:
				m.serviceAccounts[o.Name] = o
			}
			m.files[base]++
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) != 1 {
		t.Errorf("want exactly 1 Deployment, found %d", len(m.deployments))
	}
	if len(m.configMaps) == 0 || len(m.secrets) == 0 || len(m.services) == 0 || len(m.pdbs) == 0 || len(m.serviceAccounts) == 0 {
		t.Errorf("want ConfigMap, Secret, Service, PodDisruptionBudget and ServiceAccount; have %d, %d, %d, %d, %d",
			len(m.configMaps), len(m.secrets), len(m.services), len(m.pdbs), len(m.serviceAccounts))
	}
	for f, n := range m.files {
		t.Logf("%s: %d object(s)", f, n)
	}
}

// Strict decoding must catch a misspelt field; guard the guard.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := strict(doc, &appsv1.Deployment{}); err == nil {
		t.Fatal("a misspelt field (spec.replica) decoded without error")
	}
	dup := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n")
	if err := strict(dup, &corev1.ConfigMap{}); err == nil {
		t.Fatal("a duplicate field decoded without error")
	}
}

func onlyDeployment(t *testing.T, m *manifests) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	if len(m.deployments) != 1 {
		t.Fatalf("want exactly 1 Deployment, found %d", len(m.deployments))
	}
	d := m.deployments[0]
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("Deployment %s: want 1 container, found %d", d.Name, n)
	}
	return d, &d.Spec.Template.Spec.Containers[0]
}

func TestDeployment(t *testing.T) {
	m := loadManifests(t)
	d, c := onlyDeployment(t, m)
	pod := &d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas: want 2 (one active, one standby), got %v", d.Spec.Replicas)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
	case appsv1.RollingUpdateDeploymentStrategyType, "":
		ru := d.Spec.Strategy.RollingUpdate
		if ru == nil || ru.MaxUnavailable == nil || ru.MaxSurge == nil ||
			ru.MaxUnavailable.String() != "0" || ru.MaxSurge.String() != "1" {
			t.Errorf("strategy RollingUpdate: want maxUnavailable 0 and maxSurge 1, got %+v", ru)
		}
	default:
		t.Errorf("strategy %q", d.Spec.Strategy.Type)
	}

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("selector %v: %v", d.Spec.Selector, err)
	}
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %s does not match the pod template's labels %v", sel, d.Spec.Template.Labels)
	}

	// Identity and privileges.
	if pod.ServiceAccountName == "" || m.serviceAccounts[pod.ServiceAccountName] == nil {
		t.Errorf("serviceAccountName %q: no such ServiceAccount in the manifests", pod.ServiceAccountName)
	} else if sa := m.serviceAccounts[pod.ServiceAccountName]; sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s: automountServiceAccountToken must be false", sa.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("pod: automountServiceAccountToken must be false")
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod securityContext: runAsNonRoot must be true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext: seccompProfile must be RuntimeDefault")
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext: runAsUser 0")
	}
	csc := c.SecurityContext
	if csc == nil {
		t.Fatalf("container %s: no securityContext", c.Name)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Errorf("container: readOnlyRootFilesystem must be true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("container: allowPrivilegeEscalation must be false")
	}
	if csc.Privileged != nil && *csc.Privileged {
		t.Errorf("container: privileged")
	}
	if csc.Capabilities == nil || len(csc.Capabilities.Drop) != 1 || csc.Capabilities.Drop[0] != "ALL" || len(csc.Capabilities.Add) != 0 {
		t.Errorf("container: capabilities must drop [ALL] and add nothing, got %+v", csc.Capabilities)
	}
	if csc.RunAsNonRoot != nil && !*csc.RunAsNonRoot {
		t.Errorf("container: runAsNonRoot false overrides the pod's")
	}
	if csc.RunAsUser != nil && *csc.RunAsUser == 0 {
		t.Errorf("container: runAsUser 0")
	}

	// Shutdown: SIGTERM drains, each of two phases bounded by the shutdown timeout.
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 30 {
		t.Errorf("terminationGracePeriodSeconds: want 30, got %v", pod.TerminationGracePeriodSeconds)
	} else if st := envValue(c, "INVALIDATOR_SHUTDOWN_TIMEOUT", "10s"); st != "" {
		if dur, err := time.ParseDuration(st); err == nil && time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= 2*dur {
			t.Errorf("terminationGracePeriodSeconds %d must exceed twice INVALIDATOR_SHUTDOWN_TIMEOUT (%s)", *pod.TerminationGracePeriodSeconds, st)
		}
	}

	// Resources.
	mem := resource.MustParse("256Mi")
	if l, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || l.Cmp(mem) != 0 {
		t.Errorf("memory limit: want 256Mi, got %v", c.Resources.Limits.Memory())
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, ok := c.Resources.Requests[r]
		if !ok || req.IsZero() {
			t.Errorf("resources.requests.%s missing", r)
			continue
		}
		if l, ok := c.Resources.Limits[r]; ok && req.Cmp(l) > 0 {
			t.Errorf("resources: %s request %s above its limit %s", r, req.String(), l.String())
		}
	}

	// Spread across nodes.
	spread := false
	for _, tsc := range pod.TopologySpreadConstraints {
		if tsc.TopologyKey == "kubernetes.io/hostname" && tsc.LabelSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
			if err == nil && s.Matches(labels.Set(d.Spec.Template.Labels)) {
				spread = true
			}
		}
	}
	if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if w.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" {
				spread = true
			}
		}
	}
	if !spread {
		t.Errorf("the replicas are not spread across nodes (topologySpreadConstraints or preferred podAntiAffinity on kubernetes.io/hostname matching the pods)")
	}

	// Image and command.
	if c.Image == "" {
		t.Errorf("container: no image")
	}
	if len(c.Command) != 0 {
		t.Errorf("container: command %v overrides the image's ENTRYPOINT", c.Command)
	}
	if strings.Join(c.Args, " ") != "run" {
		t.Errorf("container args: want [run], got %v", c.Args)
	}
}

func envValue(c *corev1.Container, name, def string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return def
}

// resolvePort maps a probe's or Service's port (number or name) to a container port.
func resolvePort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

func TestDeploymentProbesAndPorts(t *testing.T) {
	m := loadManifests(t)
	_, c := onlyDeployment(t, m)

	found := false
	for _, p := range c.Ports {
		if p.ContainerPort == httpPort {
			found = true
			if p.Name != "metrics" {
				t.Errorf("container port %d: want name metrics, got %q", httpPort, p.Name)
			}
		}
	}
	if !found {
		t.Errorf("container does not declare port %d", httpPort)
	}
	if a := envValue(c, "INVALIDATOR_HTTP_ADDR", ":9187"); a != "" {
		_, port, err := net.SplitHostPort(a)
		if err != nil || port != strconv.Itoa(httpPort) {
			t.Errorf("INVALIDATOR_HTTP_ADDR %q does not listen on port %d", a, httpPort)
		}
	} else {
		t.Errorf("INVALIDATOR_HTTP_ADDR is empty: probes and metrics need the HTTP server")
	}

	check := func(kind string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet probe on %s", kind, path)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s probe: path %q, want %q", kind, p.HTTPGet.Path, path)
		}
		if port := resolvePort(c, p.HTTPGet.Port); port != httpPort {
			t.Errorf("%s probe: port %s resolves to %d, want %d", kind, p.HTTPGet.Port.String(), port, httpPort)
		}
	}
	check("liveness", c.LivenessProbe, "/healthz")
	check("startup", c.StartupProbe, "/healthz")
	// Readiness is /healthz, deliberately not /readyz: /readyz is 503 on the
	// standby by design, and a Deployment whose standby is NotReady can
	// never finish a rolling update (only one pod can hold the slot), and
	// its PodDisruptionBudget (maxUnavailable 1 with 1 of 2 pods Ready)
	// allows no eviction, so draining the active pod's node would hang.
	// See the comment at the top of deploy/kubernetes/deployment.yaml.
	check("readiness", c.ReadinessProbe, "/healthz")
}

func TestDeploymentEnv(t *testing.T) {
	m := loadManifests(t)
	_, c := onlyDeployment(t, m)
	known := knownEnv(t)

	if len(c.EnvFrom) != 0 {
		t.Errorf("envFrom hides which variables are set: name each INVALIDATOR_* variable in env")
	}
	seen := map[string]bool{}
	for _, e := range c.Env {
		if seen[e.Name] {
			t.Errorf("env %s set twice", e.Name)
		}
		seen[e.Name] = true
		def, ok := known[e.Name]
		if !ok {
			t.Errorf("env %s: not a variable the daemon reads (known: %s)", e.Name, strings.Join(sortedKeys(known), ", "))
			continue
		}
		if e.ValueFrom != nil {
			ref := e.ValueFrom.SecretKeyRef
			if ref == nil {
				t.Errorf("env %s: only secretKeyRef is expected in valueFrom", e.Name)
				continue
			}
			s := m.secrets[ref.Name]
			if s == nil {
				t.Errorf("env %s: Secret %q is not in the manifests", e.Name, ref.Name)
				continue
			}
			if _, ok := s.StringData[ref.Key]; !ok {
				if _, ok := s.Data[ref.Key]; !ok {
					t.Errorf("env %s: Secret %s has no key %q", e.Name, ref.Name, ref.Key)
				}
			}
			continue
		}
		if strings.HasSuffix(e.Name, "_URL") && e.Value != "" {
			t.Errorf("env %s: URLs carry credentials: take it from the Secret", e.Name)
		}
		if err := checkValueType(e.Value, def); err != nil {
			t.Errorf("env %s=%q: %v", e.Name, e.Value, err)
		}
	}
	for _, name := range []string{"INVALIDATOR_POSTGRES_URL", "INVALIDATOR_REDIS_URL"} {
		var got *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == name {
				got = &c.Env[i]
			}
		}
		if got == nil || got.ValueFrom == nil || got.ValueFrom.SecretKeyRef == nil {
			t.Errorf("env %s must come from the Secret (secretKeyRef)", name)
		}
	}
	if v := envValue(c, "INVALIDATOR_RULES", known["INVALIDATOR_RULES"]); v != rulesPath {
		t.Errorf("INVALIDATOR_RULES %q, want %s", v, rulesPath)
	}
	if v := envValue(c, "INVALIDATOR_LOG_FORMAT", "json"); v != "json" {
		t.Errorf("INVALIDATOR_LOG_FORMAT %q: use json in Kubernetes", v)
	}
}

// checkValueType checks a plain value against the type of its default.
func checkValueType(v, def string) error {
	if def == "true" || def == "false" {
		_, err := strconv.ParseBool(v)
		return err
	}
	if _, err := strconv.ParseInt(def, 10, 64); err == nil {
		_, err := strconv.ParseInt(v, 10, 64)
		return err
	}
	if _, err := time.ParseDuration(def); err == nil {
		_, err := time.ParseDuration(v)
		return err
	}
	return nil
}

func TestRulesMountedFromConfigMap(t *testing.T) {
	m := loadManifests(t)
	d, c := onlyDeployment(t, m)
	vols := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	var cm *corev1.ConfigMap
	var key string
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			t.Errorf("volumeMount %s: no such volume", vm.Name)
			continue
		}
		if v.ConfigMap == nil {
			continue
		}
		// Either the directory with an item rules.yaml, or a subPath mount.
		var file, k string
		if vm.SubPath != "" {
			file, k = vm.MountPath, vm.SubPath
			for _, it := range v.ConfigMap.Items {
				if it.Path == vm.SubPath {
					k = it.Key
				}
			}
		} else {
			for _, it := range v.ConfigMap.Items {
				if filepath.Join(vm.MountPath, it.Path) == rulesPath {
					file, k = rulesPath, it.Key
				}
			}
			if len(v.ConfigMap.Items) == 0 {
				file, k = rulesPath, filepath.Base(rulesPath)
				if filepath.Dir(rulesPath) != filepath.Clean(vm.MountPath) {
					file = ""
				}
			}
		}
		if file != rulesPath {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("volumeMount %s at %s must be readOnly", vm.Name, vm.MountPath)
		}
		cm, key = m.configMaps[v.ConfigMap.Name], k
		if cm == nil {
			t.Fatalf("volume %s: ConfigMap %q is not in the manifests", v.Name, v.ConfigMap.Name)
		}
	}
	if cm == nil {
		t.Fatalf("no ConfigMap volume provides %s", rulesPath)
	}
	rules, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q", cm.Name, key)
	}
	checkRulesFile(t, cm.Name+"/"+key, rules)
}

// checkRulesFile checks the example rules file against the shape of the README's "Rules file".
func checkRulesFile(t *testing.T, where, src string) {
	t.Helper()
	// The daemon reads the rules with gopkg.in/yaml.v3 (YAML 1.2: `on` is a
	// string, not the boolean it is in YAML 1.1), so decode with it too.
	type rule struct {
		Name     string   `yaml:"name"`
		Table    string   `yaml:"table"`
		On       []string `yaml:"on"`
		Changed  []string `yaml:"changed"`
		Keys     []string `yaml:"keys"`
		Patterns []string `yaml:"patterns"`
		Channel  string   `yaml:"channel"`
		Scope    []string `yaml:"scope"`
	}
	var f struct {
		Version       int    `yaml:"version"`
		KeyPrefix     string `yaml:"key_prefix"`
		ChannelPrefix string `yaml:"channel_prefix"`
		Rules         []rule `yaml:"rules"`
	}
	dec := yamlv3.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if f.Version != 1 {
		t.Errorf("%s: version %d, want 1", where, f.Version)
	}
	if len(f.Rules) == 0 {
		t.Fatalf("%s: no rules", where)
	}
	names := map[string]bool{}
	placeholder := regexp.MustCompile(`\{[a-z_][a-z0-9_]*\}`)
	for _, r := range f.Rules {
		if r.Name == "" || r.Table == "" {
			t.Errorf("%s: rule %+v lacks name or table", where, r)
		}
		if names[r.Name] {
			t.Errorf("%s: rule name %q twice", where, r.Name)
		}
		names[r.Name] = true
		if len(r.Keys)+len(r.Patterns) == 0 && r.Channel == "" {
			t.Errorf("%s: rule %s renders nothing", where, r.Name)
		}
		for _, op := range r.On {
			if op != "insert" && op != "update" && op != "delete" {
				t.Errorf("%s: rule %s: on %q", where, r.Name, op)
			}
		}
		for _, k := range r.Keys {
			if !placeholder.MatchString(k) {
				t.Errorf("%s: rule %s: key %q has no {column}", where, r.Name, k)
			}
		}
	}
	for _, want := range []string{"shard-structured", "user-profile", "acl", "session"} {
		if !names[want] {
			t.Errorf("%s: the README's example rule %q is missing", where, want)
		}
	}
}

func TestSecretHoldsPlaceholdersOnly(t *testing.T) {
	m := loadManifests(t)
	for _, s := range m.secrets {
		if len(s.Data) != 0 {
			t.Errorf("Secret %s: use stringData placeholders, not data", s.Name)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, "CHANGE_ME") {
				t.Errorf("Secret %s key %s: not a placeholder (must contain CHANGE_ME): real credentials belong in a secret manager", s.Name, k)
			}
		}
	}
}

func TestServiceAndPDB(t *testing.T) {
	m := loadManifests(t)
	d, c := onlyDeployment(t, m)
	podLabels := labels.Set(d.Spec.Template.Labels)

	for _, s := range m.services {
		if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("Service %s: type %s, want ClusterIP", s.Name, s.Spec.Type)
		}
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service %s: selector %v does not select the Deployment's pods", s.Name, s.Spec.Selector)
		}
		ok := false
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			if p.Name == "metrics" && p.Port == httpPort && resolvePort(c, target) == httpPort {
				ok = true
			}
		}
		if !ok {
			t.Errorf("Service %s: want a port named metrics, %d -> container port %d", s.Name, httpPort, httpPort)
		}
	}

	if len(m.pdbs) != 1 {
		t.Fatalf("want 1 PodDisruptionBudget, found %d", len(m.pdbs))
	}
	p := m.pdbs[0]
	if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.String() != "1" || p.Spec.MinAvailable != nil {
		t.Errorf("PodDisruptionBudget %s: want maxUnavailable 1 (and no minAvailable)", p.Name)
	}
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget %s: selector %v does not select the Deployment's pods", p.Name, p.Spec.Selector)
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName,omitempty"`
			NewTag  string `json:"newTag,omitempty"`
			Digest  string `json:"digest,omitempty"`
		} `json:"images,omitempty"`
	}
	if err := yaml.UnmarshalStrict([]byte(readFile(t, filepath.Join(k8sDir, kustomization))), &k); err != nil {
		t.Fatalf("%s: %v", kustomization, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s: apiVersion/kind %q %q", kustomization, k.APIVersion, k.Kind)
	}
	entries, err := os.ReadDir(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && e.Name() != kustomization {
			files = append(files, e.Name())
		}
	}
	listed := append([]string(nil), k.Resources...)
	sort.Strings(files)
	sort.Strings(listed)
	if strings.Join(files, ",") != strings.Join(listed, ",") {
		t.Errorf("%s resources %v, directory holds %v", kustomization, listed, files)
	}

	m := loadManifests(t)
	_, c := onlyDeployment(t, m)
	image := c.Image
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	for _, img := range k.Images {
		if img.Name != image {
			t.Errorf("%s: images entry %q does not match the container image %q", kustomization, img.Name, c.Image)
		}
	}
}

// Guard: the splitter handles several documents and comments.
func TestSplitDocs(t *testing.T) {
	in := "# c\n---\na: 1\n---\n# only a comment\n---  \nb: 2\n"
	docs := splitDocs([]byte(in))
	if len(docs) != 2 || !bytes.Contains(docs[0], []byte("a: 1")) || !bytes.Contains(docs[1], []byte("b: 2")) {
		t.Fatalf("splitDocs: %q", docs)
	}
}
