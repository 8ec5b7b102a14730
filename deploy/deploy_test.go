// Package deploy holds the files that run kanban-doctor watch in production (container image,
// Kubernetes, systemd, Prometheus rules, Grafana dashboard); its tests check them as shipped.
package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kanban-doctor/kanban-doctor/watch"
)

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// exported is the set of metric names the watcher registers, with a histogram's series suffixes.
func exported() map[string]bool {
	m := map[string]bool{}
	for _, n := range watch.MetricNames() {
		m[n] = true
		if strings.HasSuffix(n, "_seconds") && strings.Contains(n, "duration") {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				m[n+s] = true
			}
		}
	}
	return m
}

var metricRef = regexp.MustCompile(`\bkanban_doctor_[a-z0-9_]+`)

// checkNames fails for every kanban_doctor_* name in expr that the watcher does not export.
func checkNames(t *testing.T, where, expr string, known map[string]bool) {
	t.Helper()
	for _, n := range metricRef.FindAllString(expr, -1) {
		if !known[n] {
			t.Errorf("%s uses %s, which the watcher does not export", where, n)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRulesPassPromtoolUnitTests(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func TestEveryAlertNamesItsHelpAndUsesExportedMetrics(t *testing.T) {
	var rf ruleFile
	readYAML(t, "prometheus/rules.yaml", &rf)
	known := exported()
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			n++
			checkNames(t, r.Alert, r.Expr, known)
			if !strings.Contains(r.Annotations["description"], "`kanban-doctor ") && !strings.Contains(r.Annotations["description"], "`journalctl") {
				t.Errorf("%s: the description names no command that helps: %q", r.Alert, r.Annotations["description"])
			}
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", r.Alert)
			}
		}
	}
	if n < 8 {
		t.Fatalf("%d rules, want the 8 the README lists", n)
	}
}

// TestEveryAlertHasAFiringAndASilentCase reads the promtool unit tests: each shipped alert is
// expected to fire in at least one case and to stay silent in at least one.
func TestEveryAlertHasAFiringAndASilentCase(t *testing.T) {
	var rf ruleFile
	readYAML(t, "prometheus/rules.yaml", &rf)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, "prometheus/rules_test.yaml", &tests)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if !fires[r.Alert] || !silent[r.Alert] {
				t.Errorf("%s: firing case %v, silent case %v; want both", r.Alert, fires[r.Alert], silent[r.Alert])
			}
		}
	}
}

func TestPrometheusRuleCarriesTheRulesFile(t *testing.T) {
	var plain, crd map[string]any
	readYAML(t, "prometheus/rules.yaml", &plain)
	readYAML(t, "kubernetes/alert-rules.yaml", &crd)
	if crd["kind"] != "PrometheusRule" {
		t.Fatalf("kind %v, want PrometheusRule", crd["kind"])
	}
	spec, _ := crd["spec"].(map[string]any)
	if !reflect.DeepEqual(spec["groups"], plain["groups"]) {
		t.Fatal("kubernetes/alert-rules.yaml spec.groups differs from prometheus/rules.yaml groups")
	}
}

func TestDashboardIsWellFormedAndUsesOnlyExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/kanban-doctor.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Type    string `json:"type"`
			GridPos struct{ W, H int }
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard is not well-formed JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard lacks a title, uid or panels")
	}
	known := exported()
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or reused", p.Title, p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q: no query or no size", p.Title)
		}
		for _, q := range p.Targets {
			checkNames(t, "panel "+p.Title, q.Expr, known)
			for _, n := range metricRef.FindAllString(q.Expr, -1) {
				used[strings.TrimSuffix(n, "_bucket")] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		if s, ok := v.Query.(string); ok {
			checkNames(t, "template variable", s, known)
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{"kanban_doctor_board_verdict", "kanban_doctor_storms_total", "kanban_doctor_backups_seen_total",
		"kanban_doctor_backup_bytes", "kanban_doctor_contained_bytes_total", "kanban_doctor_wal_bytes", "kanban_doctor_verify_duration_seconds"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// k8s is the part of a Deployment's pod template the checks look at.
type container struct {
	Name         string   `yaml:"name"`
	Image        string   `yaml:"image"`
	Args         []string `yaml:"args"`
	Ports        []struct{ Name string }
	VolumeMounts []struct {
		Name, MountPath string
		ReadOnly        bool `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Resources      struct {
		Limits map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *secCtx `yaml:"securityContext"`
}

type probe struct {
	HTTPGet        struct{ Path string } `yaml:"httpGet"`
	TimeoutSeconds int                   `yaml:"timeoutSeconds"`
}

type secCtx struct {
	RunAsUser                *int  `yaml:"runAsUser"`
	RunAsGroup               *int  `yaml:"runAsGroup"`
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	Capabilities             struct{ Drop []string }
	SeccompProfile           struct{ Type string } `yaml:"seccompProfile"`
}

type deployment struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				ShareProcessNamespace bool        `yaml:"shareProcessNamespace"`
				SecurityContext       secCtx      `yaml:"securityContext"`
				Containers            []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func quantity(t *testing.T, s string) float64 {
	t.Helper()
	units := map[string]float64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "m": 1e-3}
	for u, f := range units {
		if v, ok := strings.CutSuffix(s, u); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", s, err)
			}
			return n * f
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", s, err)
	}
	return n
}

// TestKubernetesSidecarAsShipped checks deploy/kubernetes/sidecar.yaml against what running the
// watcher there needs (the file's header says why for each).
func TestKubernetesSidecarAsShipped(t *testing.T) {
	var d deployment
	readYAML(t, "kubernetes/sidecar.yaml", &d)
	pod := d.Spec.Template.Spec
	if !pod.ShareProcessNamespace {
		t.Error("shareProcessNamespace is not true: the open-process and lock-holder hazards would see only the sidecar")
	}
	for k := range d.Spec.Template.Metadata.Annotations {
		if strings.HasPrefix(k, "prometheus.io/") {
			t.Errorf("annotation %s: scraping is the PodMonitor's job", k)
		}
	}
	var gw, kd *container
	for i := range pod.Containers {
		switch pod.Containers[i].Name {
		case "kanban-doctor":
			kd = &pod.Containers[i]
		default:
			gw = &pod.Containers[i]
		}
	}
	if kd == nil || gw == nil {
		t.Fatal("want a gateway container and a kanban-doctor container")
	}
	uid := func(c *container, f func(*secCtx) *int) *int {
		if c.SecurityContext != nil && f(c.SecurityContext) != nil {
			return f(c.SecurityContext)
		}
		return f(&pod.SecurityContext)
	}
	for _, f := range []struct {
		name string
		get  func(*secCtx) *int
	}{{"runAsUser", func(s *secCtx) *int { return s.RunAsUser }}, {"runAsGroup", func(s *secCtx) *int { return s.RunAsGroup }}} {
		a, b := uid(kd, f.get), uid(gw, f.get)
		if a == nil || b == nil || *a != *b || *a == 0 {
			t.Errorf("%s: sidecar %v, gateway %v; want the same numeric non-root id", f.name, a, b)
		}
	}
	sc := kd.SecurityContext
	if sc == nil {
		t.Fatal("the sidecar has no securityContext")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("runAsNonRoot must be true")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities.drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	if sc.SeccompProfile.Type != "RuntimeDefault" && pod.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
		t.Error("no seccompProfile RuntimeDefault")
	}
	if kd.ReadinessProbe != nil || kd.StartupProbe != nil {
		t.Error("the sidecar has a readiness or startup probe: it would take the gateway's pod out")
	}
	if kd.LivenessProbe == nil || kd.LivenessProbe.HTTPGet.Path != "/livez" || time.Duration(kd.LivenessProbe.TimeoutSeconds)*time.Second <= watch.LiveTimeout {
		t.Errorf("livenessProbe %+v: want /livez with a timeout above the %s /livez waits for the loop", kd.LivenessProbe, watch.LiveTimeout)
	}
	if strings.HasSuffix(kd.Image, ":latest") || !strings.Contains(kd.Image, ":") {
		t.Errorf("image %q is not pinned to a tag or digest", kd.Image)
	}
	var root string
	for _, a := range kd.Args {
		if !strings.HasPrefix(a, "-") && a != "watch" {
			root = a
		}
	}
	rw := false
	for _, m := range kd.VolumeMounts {
		if strings.HasPrefix(root, m.MountPath) && !m.ReadOnly {
			rw = true
		}
	}
	if !rw {
		t.Errorf("the hermes root %q is not on a read-write mount: a WAL reader must create -shm", root)
	}
	args := strings.Join(kd.Args, " ")
	for _, want := range []string{"--verify-every=", "--listen=0.0.0.0:"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	// A verify child of a 350 MB board: ~30 MB anonymous plus the board's mapped pages, ~1.7 cores.
	if m := quantity(t, kd.Resources.Limits["memory"]); m < 512<<20 {
		t.Errorf("memory limit %s is below what a verify of a 350 MB board maps", kd.Resources.Limits["memory"])
	}
	if c := quantity(t, kd.Resources.Limits["cpu"]); c < 1 {
		t.Errorf("cpu limit %s: a verify would crawl", kd.Resources.Limits["cpu"])
	}

	var pm struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			PodMetricsEndpoints []struct{ Port, Path string } `yaml:"podMetricsEndpoints"`
		} `yaml:"spec"`
	}
	readYAML(t, "kubernetes/podmonitor.yaml", &pm)
	if pm.Kind != "PodMonitor" || len(pm.Spec.PodMetricsEndpoints) == 0 {
		t.Fatalf("podmonitor.yaml: kind %q with %d endpoints", pm.Kind, len(pm.Spec.PodMetricsEndpoints))
	}
	for k, v := range pm.Spec.Selector.MatchLabels {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("PodMonitor selects %s=%s, which the pod does not carry", k, v)
		}
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if !slices.ContainsFunc(kd.Ports, func(p struct{ Name string }) bool { return p.Name == ep.Port }) || ep.Path != "/metrics" {
		t.Errorf("PodMonitor endpoint %+v does not name the sidecar's metrics port", ep)
	}
}

func TestSystemdUnitVerifiesAndIsHardened(t *testing.T) {
	b, err := os.ReadFile("systemd/kanban-doctor-watch.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	set := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			set[k] = v
		}
	}
	for k, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "read-only",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
		"PrivateTmp": "yes", "RestrictNamespaces": "yes", "CapabilityBoundingSet": "", "SystemCallArchitectures": "native"} {
		if got, ok := set[k]; !ok || got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if !strings.Contains(set["RestrictAddressFamilies"], "AF_INET") || !strings.Contains(unit, "SystemCallFilter=@system-service") {
		t.Error("no RestrictAddressFamilies or SystemCallFilter")
	}
	if set["ReadWritePaths"] == "" || !strings.Contains(set["Environment"], set["ReadWritePaths"]) {
		t.Errorf("ReadWritePaths=%q must be the hermes root (WAL readers create -shm)", set["ReadWritePaths"])
	}
	if m := strings.TrimSuffix(set["MemoryMax"], "M"); m == set["MemoryMax"] || quantity(t, m) < 512 {
		t.Errorf("MemoryMax=%s is below what a verify of a 350 MB board maps", set["MemoryMax"])
	}
	if c := quantity(t, strings.TrimSuffix(set["CPUQuota"], "%")); c < 100 {
		t.Errorf("CPUQuota=%s: a verify would crawl", set["CPUQuota"])
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	// The unit names /usr/local/bin/kanban-doctor; point it at an executable that exists here.
	exe, _ := os.Executable()
	dir := t.TempDir()
	path := filepath.Join(dir, "kanban-doctor-watch.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/kanban-doctor", exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDockerfileStampsVersionAndRevision checks the image build without docker: a multi-stage
// build ending on distroless/static with a numeric non-root USER, whose link flags (the same as
// the Makefile's) really set what --version prints.
func TestDockerfileStampsVersionAndRevision(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 || !strings.HasPrefix(froms[len(froms)-1][1], "gcr.io/distroless/static") {
		t.Fatalf("FROM lines %v: want a multi-stage build ending on distroless/static", froms)
	}
	user := regexp.MustCompile(`(?m)^USER (\d+)(?::(\d+))?\s*$`).FindStringSubmatch(df)
	if user == nil || user[1] == "0" {
		t.Fatalf("no numeric non-root USER in the Dockerfile")
	}
	xs := regexp.MustCompile(`-X (\S+)=\$\{(\w+)\}`).FindAllStringSubmatch(df, -1)
	if len(xs) != 2 {
		t.Fatalf("link flags %v: want version and revision", xs)
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	vals := map[string]string{"VERSION": "v9.8.7-test", "REVISION": "0123456789abcdef0123456789abcdef01234567"}
	var ld []string
	for _, x := range xs {
		sym := strings.ReplaceAll(x[1], "github.com/kanban-doctor/kanban-doctor", "$(PKG)")
		if !strings.Contains(string(mk), "-X "+sym+"=$("+x[2]+")") {
			t.Errorf("the Makefile does not set %s from %s as the Dockerfile does", x[1], x[2])
		}
		ld = append(ld, "-X", x[1]+"="+vals[x[2]])
	}
	bin := filepath.Join(t.TempDir(), "kanban-doctor")
	cmd := exec.Command(goBin, "build", "-buildvcs=false", "-ldflags", strings.Join(ld, " "), "-o", bin, "../cmd/kanban-doctor")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), vals["VERSION"]) || !strings.Contains(string(out), vals["REVISION"]) {
		t.Fatalf("--version says %q, want the stamped version and revision", out)
	}
}

// TestScrapePassesPromtoolCheckMetrics scrapes a real watcher (a root with a board directory)
// over loopback HTTP and lints the exposition with promtool.
func TestScrapePassesPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "kanban", "boards", "alpha"), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w, err := watch.New(watch.Options{Paths: []string{root}, Listener: ln, Version: "v1", Revision: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for !w.Ready() {
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `kanban_doctor_build_info{goversion=`) {
		t.Fatalf("scrape lacks build_info:\n%s", body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
