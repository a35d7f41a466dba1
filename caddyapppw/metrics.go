package caddyapppw

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
)

// The module's Prometheus collectors. As with reverse_proxy's, they are
// created once per process and registered into each config's registry
// (the one the admin API's /metrics serves), so counts run on across
// reloads. No label holds a user id or anything a client chose: routes,
// methods and outcomes are fixed sets, and the zone is configuration.
var metrics = struct {
	once               sync.Once
	requests           *prometheus.CounterVec
	rateLimited        prometheus.Counter
	rateLimitFallbacks prometheus.Counter
	nextcloudDuration  *prometheus.HistogramVec
	nextcloudErrors    *prometheus.CounterVec
	vaultDuration      *prometheus.HistogramVec
	vaultErrors        *prometheus.CounterVec
	deliveries         *prometheus.CounterVec
	redeliveries       *prometheus.CounterVec
	redeliveryRounds   prometheus.Counter
	pendingDeliveries  prometheus.Gauge
	trackedUsers       prometheus.Collector
	sweepRounds        *prometheus.CounterVec
	sweepChecked       *prometheus.CounterVec
	sweepDeleted       prometheus.Counter
	sweepKept          prometheus.Counter
	sweepLastRound     prometheus.Gauge
}{}

const metricsNamespace, metricsSubsystem = "caddy", "app_password"

func initMetrics() {
	metrics.once.Do(func() {
		opts := func(name, help string) prometheus.Opts {
			return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
		}
		metrics.requests = prometheus.NewCounterVec(prometheus.CounterOpts(opts("requests_total",
			"API requests by route, method and outcome.")), []string{"route", "method", "outcome"})
		metrics.rateLimited = prometheus.NewCounter(prometheus.CounterOpts(opts("rate_limited_total",
			"API requests refused by the rate limit (per account or per client address).")))
		metrics.rateLimitFallbacks = prometheus.NewCounter(prometheus.CounterOpts(opts("rate_limit_fallbacks_total",
			"Rate-limit checks the shared (Redis) limiter could not answer, so the in-process one (or on_error deny) did.")))
		metrics.nextcloudDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "nextcloud_check_duration_seconds",
			Help: "Time of one credential check against Nextcloud, by result.", Buckets: prometheus.DefBuckets,
		}, []string{"result"})
		metrics.nextcloudErrors = prometheus.NewCounterVec(prometheus.CounterOpts(opts("nextcloud_errors_total",
			"Credential checks that got no usable answer from Nextcloud, by kind.")), []string{"kind"})
		metrics.vaultDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "vault_operation_duration_seconds",
			Help: "Time of one storage operation in Vault (retries and re-login included), by operation.", Buckets: prometheus.DefBuckets,
		}, []string{"op"})
		metrics.vaultErrors = prometheus.NewCounterVec(prometheus.CounterOpts(opts("vault_errors_total",
			"Failed Vault operations, by operation and kind.")), []string{"op", "kind"})
		metrics.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts(opts("deliveries_total",
			"Changes handed on to the MCP server (deliver_to_mcp), by route and outcome: accepted, refused or unreachable.")), []string{"route", "outcome"})
		metrics.redeliveries = prometheus.NewCounterVec(prometheus.CounterOpts(opts("redeliveries_total",
			"Changes delivered again to the MCP server in the background, by result: accepted, refused, throttled, "+
				"unreachable, given_up, storage_error.")), []string{"result"})
		metrics.redeliveryRounds = prometheus.NewCounter(prometheus.CounterOpts(opts("redelivery_rounds_total",
			"Re-delivery rounds this process ran (holding the lease): each lists the stored users and delivers what they owe.")))
		metrics.pendingDeliveries = prometheus.NewGauge(prometheus.GaugeOpts(opts("deliveries_pending",
			"Records whose change the MCP server had not taken at the end of the last re-delivery round of this process.")))
		metrics.sweepRounds = prometheus.NewCounterVec(prometheus.CounterOpts(opts("sweep_rounds_total",
			"Sweep rounds run, by result: complete, or why the round ended early.")), []string{"result"})
		metrics.sweepChecked = prometheus.NewCounterVec(prometheus.CounterOpts(opts("sweep_checked_total",
			"Stored passwords the sweep checked against Nextcloud, by verdict: valid, rejected, unavailable, throttled.")), []string{"verdict"})
		metrics.sweepDeleted = prometheus.NewCounter(prometheus.CounterOpts(opts("sweep_deleted_total",
			"Stored passwords the sweep deleted because Nextcloud rejects them.")))
		metrics.sweepKept = prometheus.NewCounter(prometheus.CounterOpts(opts("sweep_kept_on_error_total",
			"Stored passwords the sweep kept because their check or their record failed.")))
		metrics.sweepLastRound = prometheus.NewGauge(prometheus.GaugeOpts(opts("sweep_last_round_timestamp_seconds",
			"When the last sweep round of this process ended (Unix time).")))
		metrics.trackedUsers = trackedUsersCollector{
			users: prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "tracked_users"),
				"Accounts (user ids, login names) the rate limiter holds state for, by zone.", []string{"zone"}, nil),
			addresses: prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "tracked_addresses"),
				"Client addresses the per-address limit holds state for, by zone.", []string{"zone"}, nil),
		}
	})
}

// registerMetrics adds the collectors to a config's registry. A second
// handler in the same config finds them registered already.
func registerMetrics(reg prometheus.Registerer) error {
	initMetrics()
	for _, c := range []prometheus.Collector{
		metrics.requests, metrics.rateLimited, metrics.rateLimitFallbacks, metrics.nextcloudDuration, metrics.nextcloudErrors,
		metrics.vaultDuration, metrics.vaultErrors, metrics.deliveries, metrics.redeliveries, metrics.redeliveryRounds, metrics.pendingDeliveries, metrics.trackedUsers,
		metrics.sweepRounds, metrics.sweepChecked, metrics.sweepDeleted, metrics.sweepKept, metrics.sweepLastRound,
	} {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	return nil
}

// trackedUsersCollector reads the limiters' sizes when scraped, so the
// request path never touches a gauge.
type trackedUsersCollector struct{ users, addresses *prometheus.Desc }

func (c trackedUsersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.users
	ch <- c.addresses
}

func (c trackedUsersCollector) Collect(ch chan<- prometheus.Metric) {
	ratelimit.EachZone(func(kind ratelimit.Kind, zone string, tracked int) {
		desc := c.users
		if kind == ratelimit.Addresses {
			desc = c.addresses
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(tracked), zone)
	})
}

// observeVault records one Vault operation: the store's observer.
func observeVault(op string, took time.Duration, failure string) {
	metrics.vaultDuration.WithLabelValues(op).Observe(took.Seconds())
	if failure != "" {
		metrics.vaultErrors.WithLabelValues(op, failure).Inc()
	}
}

// sweepObserver counts the sweep's rounds, checks, deletions and records
// kept on error: the sweeper's observer.
type sweepObserver struct{}

func (sweepObserver) RoundStarted(bool) {}

func (sweepObserver) Checked(v sweep.Verdict, _ time.Duration) {
	metrics.sweepChecked.WithLabelValues(v.String()).Inc()
}

func (sweepObserver) RoundEnded(r sweep.Report) {
	result := string(r.Stopped)
	if r.Complete() {
		result = "complete"
	}
	metrics.sweepRounds.WithLabelValues(result).Inc()
	metrics.sweepDeleted.Add(float64(len(r.Deleted)))
	metrics.sweepKept.Add(float64(len(r.Kept)))
	metrics.sweepLastRound.Set(float64(r.Ended.UnixNano()) / 1e9)
}
