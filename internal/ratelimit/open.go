package ratelimit

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Options are what a config's limiters need besides their Config.
type Options struct {
	// Zone names the state kept across reloads and shared by the
	// handlers that name it: rate_limit's zone, or the handler's default
	// for it.
	Zone string
	// Lease is how long an attempt held on Redis counts while it is in
	// flight: the longest a request can run. A member whose end never
	// comes (a replica that died mid-request) stops counting then.
	Lease time.Duration
	// Replacer replaces the placeholders of the Redis URL and password.
	Replacer *caddy.Replacer
	// Logger gets the shared limiter's outages and recoveries.
	Logger *zap.Logger
	// OnFallback, if set, is called at each check the shared limiter
	// could not answer: the handler counts them in a metric.
	OnFallback func()
}

// Open returns the limiters of c, whose defaults are set: per account,
// and per client address when PerAddress is set (else nil). With Redis
// each is a Redis wrapping the Local of its zone. The caller closes each.
func (c *Config) Open(o Options) (accounts, addresses Limiter, err error) {
	if o.Replacer == nil {
		o.Replacer = caddy.NewReplacer()
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	lim := limits{attempts: c.Attempts, window: time.Duration(c.Window), maxUsers: c.MaxUsers}
	if accounts, err = c.open(Accounts, lim, o.Zone, o); err != nil {
		return nil, nil, err
	}
	if pa := c.PerAddress; pa != nil {
		lim := limits{attempts: pa.Failures, window: time.Duration(pa.Window), maxUsers: c.MaxUsers}
		if addresses, err = c.open(Addresses, lim, "addr:"+o.Zone, o); err != nil {
			_ = accounts.Close()
			return nil, nil, err
		}
	}
	return accounts, addresses, nil
}

// open returns one limit's limiter; on Redis, under keyspace.
func (c *Config) open(kind Kind, lim limits, keyspace string, o Options) (Limiter, error) {
	local := newLocal(kind, o.Zone, lim)
	if c.Redis == nil {
		return local, nil
	}
	r, err := newRedis(c.Redis, keyspace, local, o)
	if err != nil {
		_ = local.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	return r, nil
}
