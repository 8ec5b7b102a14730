package watch

import (
	"net/http"
	"regexp"
	"runtime"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the Prometheus series the watcher exports; every one carries a board label.
type metrics struct {
	reg          *prometheus.Registry
	seen         *prometheus.CounterVec
	storms       *prometheus.CounterVec
	stormActive  *prometheus.GaugeVec
	backupBytes  *prometheus.GaugeVec
	walBytes     *prometheus.GaugeVec
	healthy      *prometheus.GaugeVec
	rescans      *prometheus.CounterVec
	contained    *prometheus.CounterVec
	containBytes *prometheus.CounterVec
	buildInfo    *prometheus.GaugeVec
	verdict      *prometheus.GaugeVec
	corruptClass *prometheus.GaugeVec
	lastVerify   *prometheus.GaugeVec
	verifyTime   *prometheus.HistogramVec
	verifyErrors *prometheus.CounterVec
	verifyEvery  prometheus.Gauge
	own          []prometheus.Collector // the kanban_doctor_* collectors
}

// Verdicts are the values of kanban_doctor_board_verdict's verdict label: the probe's verdicts. A
// verify that gives none counts in kanban_doctor_verify_errors_total instead.
var Verdicts = []string{"healthy", "transient", "false-positive", "corrupt", "inconclusive"}

// MetricNames lists the metric families the watcher registers itself (Go and process collector
// metrics aside), read from the collectors' descriptions, so it cannot drift from what /metrics
// serves; the shipped dashboard and alert rules may use only these.
func MetricNames() []string {
	m := newMetrics("", "", 0)
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range m.own {
			c.Describe(ch)
		}
		close(ch)
	}()
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	var out []string
	for d := range ch {
		if sm := re.FindStringSubmatch(d.String()); sm != nil {
			out = append(out, sm[1])
		}
	}
	sort.Strings(out)
	return out
}

func newMetrics(version, revision string, verifyEvery time.Duration) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	b := []string{"board"}
	m.seen = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kanban_doctor_backups_seen_total",
		Help: "Corrupt-backup units (main files) seen arriving or present, per board."}, b)
	m.storms = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kanban_doctor_storms_total",
		Help: "Backup storms started (more than --storm-count units within --storm-window)."}, b)
	m.stormActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanban_doctor_storm_active",
		Help: "1 while a backup storm is in progress on the board."}, b)
	m.backupBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanban_doctor_backup_bytes",
		Help: "Disk bytes held by the board's corrupt backups (each inode counted once)."}, b)
	m.walBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanban_doctor_wal_bytes",
		Help: "Size of the board's -wal file (stat only)."}, b)
	m.healthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanban_doctor_board_healthy",
		Help: "Last probe verdict: 1 healthy (or a cleared false positive), 0 corrupt; absent until a probe ran."}, b)
	m.rescans = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kanban_doctor_watcher_rescans_total",
		Help: "Full scans of the board directory, by reason (initial, overflow, periodic, directory, poll)."},
		[]string{"board", "reason"})
	m.contained = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kanban_doctor_contained_total",
		Help: "Duplicate backup units collapsed into hard links of an identical kept unit."}, b)
	m.containBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kanban_doctor_contained_bytes_total",
		Help: "Bytes freed by containment."}, b)
	m.buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanban_doctor_build_info",
		Help: "Always 1, one series per watcher process: the build that runs it."}, []string{"version", "revision", "goversion"})
	m.buildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
	m.verdict = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanban_doctor_board_verdict",
		Help: "1 for the board's current verdict (last verify, periodic or on a storm), 0 for the others; absent until a verify ran."},
		[]string{"board", "verdict"})
	m.corruptClass = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanban_doctor_board_corrupt_class",
		Help: "1 while the board's current verdict is corrupt, labelled with the probe's damage class."},
		[]string{"board", "class"})
	m.lastVerify = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanban_doctor_last_verify_timestamp_seconds",
		Help: "Unix time of the board's last verdict; before the first one, when its verifies were first due."}, b)
	m.verifyTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kanban_doctor_verify_duration_seconds",
		Help:    "Wall time of one verify child, per board.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}}, b)
	m.verifyErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kanban_doctor_verify_errors_total",
		Help: "Verifies that gave no verdict: the child could not start, timed out, or exited outside the exit-code contract."}, b)
	m.verifyEvery = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kanban_doctor_verify_every_seconds",
		Help: "The --verify-every interval in seconds (0: periodic verify off)."})
	m.verifyEvery.Set(max(verifyEvery, 0).Seconds())
	m.own = []prometheus.Collector{m.seen, m.storms, m.stormActive, m.backupBytes, m.walBytes, m.healthy,
		m.rescans, m.contained, m.containBytes, m.buildInfo,
		m.verdict, m.corruptClass, m.lastVerify, m.verifyTime, m.verifyErrors, m.verifyEvery}
	m.reg.MustRegister(m.own...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// board creates the board's series at their initial values, so they are exported before anything happens.
func (m *metrics) board(name string) {
	m.seen.WithLabelValues(name)
	m.storms.WithLabelValues(name)
	m.stormActive.WithLabelValues(name)
	m.backupBytes.WithLabelValues(name)
	m.walBytes.WithLabelValues(name)
	m.contained.WithLabelValues(name)
	m.containBytes.WithLabelValues(name)
	m.verifyErrors.WithLabelValues(name)
}

// forgetVerdict drops the verdict series of a board whose DB is gone.
func (m *metrics) forgetVerdict(name string) {
	l := prometheus.Labels{"board": name}
	m.verdict.DeletePartialMatch(l)
	m.corruptClass.DeletePartialMatch(l)
	m.healthy.DeletePartialMatch(l)
	m.lastVerify.DeletePartialMatch(l)
}

// setVerdict records a verify's answer: the verdict gauges (one 1, the rest 0), the corrupt class,
// board_healthy, the time of the verdict and the duration.
func (m *metrics) setVerdict(name, verdict, class string, at time.Time, took time.Duration, failed bool) {
	m.verifyTime.WithLabelValues(name).Observe(took.Seconds())
	if failed {
		m.verifyErrors.WithLabelValues(name).Inc()
		return
	}
	for _, v := range Verdicts {
		m.verdict.WithLabelValues(name, v).Set(0)
	}
	m.verdict.WithLabelValues(name, verdict).Set(1)
	m.corruptClass.DeletePartialMatch(prometheus.Labels{"board": name})
	switch verdict {
	case "healthy", "transient", "false-positive":
		m.healthy.WithLabelValues(name).Set(1)
	case "corrupt":
		m.healthy.WithLabelValues(name).Set(0)
		if class == "" {
			class = "unknown"
		}
		m.corruptClass.WithLabelValues(name, class).Set(1)
	}
	m.lastVerify.WithLabelValues(name).Set(float64(at.UnixNano()) / 1e9)
}

// handler serves /metrics, /livez (the event loop answers: live reports an error when it does not)
// and /readyz (the initial scan is done).
func (m *metrics) handler(ready *atomic.Bool, live func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		if err := live(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "initial scan not finished", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
