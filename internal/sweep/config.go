package sweep

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Defaults of Config. They are chosen for Nextcloud's brute-force
// protection, which throttles the proxy's address: every password the
// sweep finds revoked is a failed login from that address, and Nextcloud
// answers each later request from it 25 ms × 2^failures slower (up to
// 25 s).
const (
	// DefaultInterval is the time between rounds.
	DefaultInterval = time.Hour
	// DefaultRate is the checks per second: 200 users take 100 s.
	DefaultRate = 2.0
	// DefaultConcurrency is the checks in flight at once. Two keep the
	// rate up while Nextcloud answers in up to a second.
	DefaultConcurrency = 2
	// DefaultSlowThreshold ends a round at a check slower than this. A
	// healthy Nextcloud answers a credential check in well under a
	// second; 2 s is what its throttle adds after about six failed
	// logins, long before the 25 s that break Astrolabe's 10 s timeout.
	DefaultSlowThreshold = 2 * time.Second
	// DefaultMaxFailures is how many failed checks in a row end a round.
	DefaultMaxFailures = 3

	// minInterval keeps a mistyped interval ("1s") from turning the
	// sweep into a load test of Nextcloud.
	minInterval = time.Minute
	// maxRate is well below what trips Nextcloud's throttle when many
	// stored passwords are revoked.
	maxRate = 50.0
)

// Config is the sweep's configuration: the `sweep` block inside
// `app_password`. Zero values mean the defaults.
type Config struct {
	// How often one round runs across all replicas (default 1h). Each
	// replica waits the interval ±10 % (jitter) between attempts, so
	// replicas started together do not knock at once; a lease lets only
	// one of them run the round. At least 1m.
	Interval caddy.Duration `json:"interval,omitempty"`

	// The most credential checks per second a round sends to Nextcloud
	// (default 2; fractions allowed, e.g. 0.5; at most 50).
	Rate float64 `json:"rate,omitempty"`

	// The most checks in flight at once (default 2).
	Concurrency int `json:"concurrency,omitempty"`

	// A check that takes longer than this ends the round (default 2s):
	// Nextcloud slowing down is its brute-force throttle or an overload,
	// and further checks would only add to either.
	SlowThreshold caddy.Duration `json:"slow_threshold,omitempty"`

	// How many checks in a row that failed (timeout, 5xx, maintenance,
	// redirect, an answer that is not OCS) end the round (default 3).
	// A failed check deletes nothing. One account that Nextcloud cannot
	// answer for must not keep the sweep from every account listed
	// after it, but an outage should cost Nextcloud only a few requests.
	// 1 ends the round at the first failure.
	MaxFailures int `json:"max_failures,omitempty"`

	// Turns the periodic sweep off. `caddy app-password sweep` still
	// runs a round by hand.
	Off bool `json:"off,omitempty"`
}

// SetDefaults fills in the zero values, as Caddy's Provision does.
func (c *Config) SetDefaults() {
	if c.Interval == 0 {
		c.Interval = caddy.Duration(DefaultInterval)
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.SlowThreshold == 0 {
		c.SlowThreshold = caddy.Duration(DefaultSlowThreshold)
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = DefaultMaxFailures
	}
}

// Validate reports a configuration the sweep cannot run with. It expects
// SetDefaults to have run.
func (c *Config) Validate() error {
	var errs []error
	if d := time.Duration(c.Interval); d < minInterval {
		errs = append(errs, fmt.Errorf("interval: %s is shorter than %s", d, minInterval))
	}
	if !(c.Rate > 0 && c.Rate <= maxRate) { // also refuses NaN
		errs = append(errs, fmt.Errorf("rate: %g is not in (0, %g] checks per second", c.Rate, maxRate))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency: %d is less than 1", c.Concurrency))
	}
	if c.SlowThreshold <= 0 {
		errs = append(errs, fmt.Errorf("slow_threshold: %s is not positive", time.Duration(c.SlowThreshold)))
	}
	if c.MaxFailures < 1 {
		errs = append(errs, fmt.Errorf("max_failures: %d is less than 1", c.MaxFailures))
	}
	return errors.Join(errs...)
}
