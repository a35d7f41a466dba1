package ratelimit

import (
	"testing"
	"time"
)

// An attempt counts while it is younger than the window: at exactly one
// window after it, it no longer does, and the key has an attempt again.
// The check is on what the limiter holds, not on a zero wait: a refusal
// must never come with a zero wait, and a reservation must hold the key.
// Failing first: with `<=` turned into `<` in userWindow.expire, the
// attempt at the edge still counts, and the reserve at the edge is a
// refusal with a zero wait that holds nothing.
func TestLimiterWindowEdgeFreesTheOldestAttempt(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 3, window: time.Hour, maxUsers: 10}
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Minute)
		mustReserve(t, l, "alice", at, lim).Commit(at)
	}
	edge := t0.Add(time.Hour)
	a := new(Attempt)
	wait, _ := (&Local{state: l, lim: lim}).Reserve(a, "alice", edge)
	if wait != 0 || !a.holds("alice") {
		t.Fatalf("at the window's edge (the oldest attempt exactly %v old): wait=%v, holds the key=%v; want a reservation",
			lim.window, wait, a.holds("alice"))
	}
	a.Commit(edge)
	// Counted now: t0+1m, t0+2m and the edge's; the next frees at t0+1h1m.
	_, wait, ok := reserve(l, "alice", edge, lim)
	if ok || wait != time.Minute {
		t.Fatalf("after the edge's attempt: ok=%v wait=%v, want a refusal for 1m", ok, wait)
	}
}
