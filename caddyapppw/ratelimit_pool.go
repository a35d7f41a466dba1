package caddyapppw

import (
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// limiters keeps limiter state across config reloads, as reverse_proxy
// keeps upstream health and caddy-ratelimit keeps its zones: a new config
// takes its reference before the old config lets go of its own, so the
// state lives on while any config uses its zone. A zone's per-account
// state is keyed by the zone (a string), its per-address state by
// addressZone.
var limiters = caddy.NewUsagePool()

// addressZone is the key of a zone's per-address limiter in limiters.
type addressZone string

// Destruct implements caddy.Destructor. The limiter has no goroutine or
// file to close; dropping the last reference frees it.
func (*limiter) Destruct() error { return nil }

// acquireLimiter returns the per-account limiter of zone, creating it on
// first use. Each call must be paired with releaseLimiter.
func acquireLimiter(zone string) *limiter { return acquire(zone) }

func releaseLimiter(zone string) { _, _ = limiters.Delete(zone) }

// acquireAddressLimiter returns the per-address limiter of zone; each
// call must be paired with releaseAddressLimiter.
func acquireAddressLimiter(zone string) *limiter { return acquire(addressZone(zone)) }

func releaseAddressLimiter(zone string) { _, _ = limiters.Delete(addressZone(zone)) }

func acquire(key any) *limiter {
	v, _, _ := limiters.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newLimiter(), nil
	})
	return v.(*limiter)
}

// redisConns keeps the shared limiters' Redis clients, keyed by their
// options: a reload reuses the connections, and the per-account and
// per-address limits of a config share one client.
var redisConns = caddy.NewUsagePool()

// redisConn is a Redis client referenced by its entry in redisConns (for
// as long as a config uses it) and by each attempt that has reserved on
// it and not yet finished. It is closed when the last reference goes, so
// an attempt that outlives its config still commits or releases.
type redisConn struct {
	client *redis.Client
	refs   atomic.Int64
	// failing is set while Redis does not answer, so that an incident is
	// logged once for all the limiters on this client.
	failing atomic.Bool
}

func acquireRedisConn(key string, opts *redis.Options) *redisConn {
	v, _, _ := redisConns.LoadOrNew(key, func() (caddy.Destructor, error) {
		c := &redisConn{client: redis.NewClient(opts)}
		c.refs.Store(1) // the pool entry's
		return c, nil
	})
	return v.(*redisConn)
}

func releaseRedisConn(key string) { _, _ = redisConns.Delete(key) }

// Destruct implements caddy.Destructor: the last config let go.
func (c *redisConn) Destruct() error {
	c.unref()
	return nil
}

// ref takes a reference unless the client is closed already.
func (c *redisConn) ref() bool {
	for {
		n := c.refs.Load()
		if n == 0 {
			return false
		}
		if c.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (c *redisConn) unref() {
	if c.refs.Add(-1) == 0 {
		_ = c.client.Close()
	}
}
