package caddyapppw

import "github.com/caddyserver/caddy/v2"

// limiters keeps limiter state across config reloads, as reverse_proxy
// keeps upstream health and caddy-ratelimit keeps its zones: a new config
// takes its reference before the old config lets go of its own, so the
// state lives on while any config uses its zone.
var limiters = caddy.NewUsagePool()

// Destruct implements caddy.Destructor. The limiter has no goroutine or
// file to close; dropping the last reference frees it.
func (*limiter) Destruct() error { return nil }

// acquireLimiter returns the limiter of zone, creating it on first use.
// Each call must be paired with releaseLimiter.
func acquireLimiter(zone string) *limiter {
	v, _, _ := limiters.LoadOrNew(zone, func() (caddy.Destructor, error) {
		return newLimiter(), nil
	})
	return v.(*limiter)
}

func releaseLimiter(zone string) {
	_, _ = limiters.Delete(zone)
}
