package ratelimit

import (
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// Kind tells a zone's per-account state from its per-address state.
type Kind uint8

const (
	// Accounts is the state of the per-account limit.
	Accounts Kind = iota
	// Addresses is the state of the per-address limit.
	Addresses
)

// zoneKey is a state's key in zones. A struct, not a string: a zone an
// operator names "addr:x" must not meet zone x's per-address state.
type zoneKey struct {
	kind Kind
	zone string
}

// zones keeps the in-process states across config reloads, as
// reverse_proxy keeps upstream health and caddy-ratelimit keeps its
// zones: the state lives while any config uses its zone.
var zones = caddy.NewUsagePool()

// Destruct implements caddy.Destructor. The state has no goroutine or
// file to close; dropping the last reference frees it.
func (*zoneState) Destruct() error { return nil }

func acquireZone(k zoneKey) *zoneState {
	v, _, _ := zones.LoadOrNew(k, func() (caddy.Destructor, error) {
		return newZoneState(), nil
	})
	return v.(*zoneState)
}

func releaseZone(k zoneKey) { _, _ = zones.Delete(k) }

// EachZone calls f with the number of keys each zone's state holds: what
// the tracked_users and tracked_addresses metrics report when scraped, so
// the request path never touches a gauge.
func EachZone(f func(kind Kind, zone string, tracked int)) {
	zones.Range(func(key, value any) bool {
		k := key.(zoneKey)
		f(k.kind, k.zone, value.(*zoneState).tracked())
		return true
	})
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

// acquireRedisConn returns the client of key, made by newClient (a plain
// or a Sentinel failover client) when no config holds it yet.
func acquireRedisConn(key string, newClient func() *redis.Client) *redisConn {
	v, _, _ := redisConns.LoadOrNew(key, func() (caddy.Destructor, error) {
		c := &redisConn{client: newClient()}
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
