package ratelimit

import (
	"sync/atomic"
	"time"
)

// Local is the in-process limiter: a zone's state under one config's
// limits. Each Caddy process counts on its own.
type Local struct {
	state *zoneState
	lim   limits
	// key is the state's entry in zones, let go of by Close; pooled is
	// false for a state of its own (tests).
	key    zoneKey
	pooled bool
	closed atomic.Bool
}

// newLocal returns the limiter of zone's state of kind under lim, taking
// a reference to the state: a new config takes its reference before the
// old config lets go of its own, so the counts live on across a reload.
func newLocal(kind Kind, zone string, lim limits) *Local {
	k := zoneKey{kind: kind, zone: zone}
	return &Local{state: acquireZone(k), lim: lim, key: k, pooled: true}
}

// Reserve implements Limiter.
func (l *Local) Reserve(a *Attempt, key string, now time.Time) (time.Duration, error) {
	if a.holds(key) {
		return 0, nil
	}
	a.claim(l, nil)
	return l.state.reserve(a, key, now, l.lim), nil
}

// end ends an attempt l reserved: its windows are counted or given
// back, and the keys it counts without a reservation are counted.
func (l *Local) end(a *Attempt, commit bool, now time.Time) {
	t := now.UnixNano()
	if a.nh > 0 {
		l.state.finish(a.held[:a.nh], commit, t, l.lim)
	}
	if commit && a.na > 0 {
		l.state.count(a.also[:a.na], t, l.lim)
	}
}

// Close implements Limiter. The state goes with the last config that
// uses its zone.
func (l *Local) Close() error {
	if l.pooled && l.closed.CompareAndSwap(false, true) {
		releaseZone(l.key)
	}
	return nil
}
