package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the bridge's Prometheus series. They are registered on the
// Registerer the caller passes, never on the global default registry.
type Metrics struct {
	polls           *prometheus.CounterVec
	pollDuration    *prometheus.HistogramVec
	changes         *prometheus.CounterVec
	published       *prometheus.CounterVec
	publishFailures prometheus.Counter
	publishLatency  prometheus.Histogram
	pending         prometheus.Gauge
	watches         *prometheus.GaugeVec
	encodeFailures  prometheus.Counter
	snapshotWrites  *prometheus.CounterVec
	hints           *prometheus.CounterVec
	schedulingLag   prometheus.Histogram
}

// NewMetrics creates the series and registers them on reg (nil: unregistered,
// for tests and benchmarks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobbridge_polls_total", Help: "Vendor polls by vendor, instance and result (ok, not_found, malformed, auth, error).",
		}, []string{"vendor", "instance", "result"}),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jobbridge_poll_duration_seconds", Help: "Time to fetch and parse one job status.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"vendor", "instance"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobbridge_changes_detected_total", Help: "Changes detected, by vendor and event kind.",
		}, []string{"vendor", "kind"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobbridge_events_published_total", Help: "Events acknowledged by JetStream, by type; duplicate=true when the duplicate window dropped a resend.",
		}, []string{"type", "duplicate"}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobbridge_publish_failures_total", Help: "Failed publish attempts (each is retried).",
		}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jobbridge_publish_latency_seconds", Help: "From the vendor answer to the JetStream ack.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jobbridge_events_pending", Help: "Events detected and not yet acknowledged by JetStream.",
		}),
		watches: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jobbridge_watches", Help: "Watched jobs by vendor and instance.",
		}, []string{"vendor", "instance"}),
		encodeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jobbridge_encode_failures_total", Help: "Changes that could not be encoded as a valid CloudEvent.",
		}),
		snapshotWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobbridge_snapshot_writes_total", Help: "Tracker records written to the state bucket, by result.",
		}, []string{"result"}),
		hints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jobbridge_hints_total", Help: "Push hints received, by vendor and whether the job is watched.",
		}, []string{"vendor", "watched"}),
		schedulingLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jobbridge_scheduling_lag_seconds", Help: "How late a poll started after it was due.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.polls, m.pollDuration, m.changes, m.published, m.publishFailures,
			m.publishLatency, m.pending, m.watches, m.encodeFailures, m.snapshotWrites, m.hints, m.schedulingLag} {
			reg.MustRegister(c)
		}
	}
	return m
}
