package watch

import (
	"net/http"
	"runtime"
	"sync/atomic"

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
	version      string
}

func newMetrics(version string) *metrics {
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
		Help: "Always 1, per watched board: the build that watches it."}, []string{"board", "version", "goversion"})
	m.reg.MustRegister(m.seen, m.storms, m.stormActive, m.backupBytes, m.walBytes, m.healthy,
		m.rescans, m.contained, m.containBytes, m.buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.version = version
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
	m.buildInfo.WithLabelValues(name, m.version, runtime.Version()).Set(1)
}

// handler serves /metrics, /livez (the process answers) and /readyz (the initial scan is done).
func (m *metrics) handler(ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
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
