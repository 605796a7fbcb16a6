package hmc

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one notifier's series, curried with its instance and mode.
type metrics struct {
	connected     prometheus.Gauge
	reconnects    prometheus.Counter
	reconciles    prometheus.Counter
	notifications *prometheus.CounterVec
	unknown       prometheus.Counter
	refused       prometheus.Counter
}

// newMetrics registers the series on reg (nil: unregistered). Several
// notifiers share one registry: a series registered already is reused.
func newMetrics(reg prometheus.Registerer, instance, mode string) (*metrics, error) {
	labels := []string{"instance", "mode"}
	connected := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jobbridge_hmc_push_connected", Help: "1 while the HMC push channel (STOMP or SSE) is connected and subscribed, else 0.",
	}, labels)
	reconnects := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobbridge_hmc_push_reconnects_total", Help: "Failed or lost HMC push connections, each followed by a reconnect with backoff.",
	}, labels)
	reconciles := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobbridge_hmc_push_reconciles_total", Help: "Reconcile requests (poll every tracked HMC job) after a connect, reconnect, re-logon or while the channel is down.",
	}, labels)
	notifications := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobbridge_hmc_push_notifications_total", Help: "HMC notifications received, by notification-type.",
	}, append(labels, "type"))
	unknown := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobbridge_hmc_push_hints_unknown_job_total", Help: "job-completion notifications for a job nobody watches.",
	}, labels)
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jobbridge_hmc_push_refused_topics_total", Help: "Topics the HMC broker refused (unknown or unapproved); they are dropped, not retried.",
	}, labels)
	var err error
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if reg == nil || err != nil {
			return c
		}
		if e := reg.Register(c); e != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(e, &are) {
				return are.ExistingCollector
			}
			err = e
		}
		return c
	}
	gv := reg1(connected).(*prometheus.GaugeVec)
	rv := reg1(reconnects).(*prometheus.CounterVec)
	cv := reg1(reconciles).(*prometheus.CounterVec)
	nv := reg1(notifications).(*prometheus.CounterVec)
	uv := reg1(unknown).(*prometheus.CounterVec)
	fv := reg1(refused).(*prometheus.CounterVec)
	if err != nil {
		return nil, err
	}
	l := prometheus.Labels{"instance": instance, "mode": mode}
	return &metrics{
		connected:     gv.With(l),
		reconnects:    rv.With(l),
		reconciles:    cv.With(l),
		notifications: nv.MustCurryWith(l),
		unknown:       uv.With(l),
		refused:       fv.With(l),
	}, nil
}
