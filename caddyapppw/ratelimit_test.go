package caddyapppw

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func mustReserve(t *testing.T, l *limiter, key string, now time.Time, lim limits) *reservation {
	t.Helper()
	res, wait, ok := l.reserve(key, now, lim)
	if !ok {
		t.Fatalf("%s refused at %v (wait %v)", key, now.Sub(t0), wait)
	}
	return &res
}

func TestLimiterWindowEdges(t *testing.T) {
	l := newLimiter()
	lim := limits{attempts: 3, window: time.Hour, maxUsers: 10}
	for i := range 3 {
		r := mustReserve(t, l, "alice", t0.Add(time.Duration(i)*time.Minute), lim)
		r.commit(t0.Add(time.Duration(i) * time.Minute))
	}
	// Full: the oldest attempt (t0) leaves the window at t0+1h.
	_, wait, ok := l.reserve("alice", t0.Add(30*time.Minute), lim)
	if ok || wait != 30*time.Minute || retryAfterSeconds(wait) != 1800 {
		t.Fatalf("ok=%v wait=%v", ok, wait)
	}
	_, wait, ok = l.reserve("alice", t0.Add(time.Hour-time.Nanosecond), lim)
	if ok || wait != time.Nanosecond || retryAfterSeconds(wait) != 1 {
		t.Fatalf("one ns before the edge: ok=%v wait=%v", ok, wait)
	}
	// At exactly t0+1h the first attempt no longer counts.
	r := mustReserve(t, l, "alice", t0.Add(time.Hour), lim)
	r.release()
	// Other users are not affected.
	mustReserve(t, l, "bob", t0, lim).release()
}

func TestLimiterReleaseDoesNotCount(t *testing.T) {
	l := newLimiter()
	lim := limits{attempts: 1, window: time.Hour, maxUsers: 10}
	for range 10 {
		r := mustReserve(t, l, "alice", t0, lim)
		r.release()
		r.commit(t0) // after release: no effect
	}
	if n := l.tracked(); n != 0 {
		t.Fatalf("released attempts left %d users tracked", n)
	}
}

func TestLimiterInflightReservationsBound(t *testing.T) {
	l := newLimiter()
	lim := limits{attempts: 2, window: time.Hour, maxUsers: 10}
	a := mustReserve(t, l, "alice", t0, lim)
	b := mustReserve(t, l, "alice", t0, lim)
	// Both still running: a third concurrent attempt is refused.
	if _, wait, ok := l.reserve("alice", t0, lim); ok || retryAfterSeconds(wait) != 1 {
		t.Fatalf("third concurrent attempt: ok=%v wait=%v", ok, wait)
	}
	a.release()
	c := mustReserve(t, l, "alice", t0, lim)
	b.commit(t0)
	c.commit(t0.Add(time.Second))
	if _, wait, ok := l.reserve("alice", t0.Add(time.Minute), lim); ok || wait != 59*time.Minute {
		t.Fatalf("ok=%v wait=%v", ok, wait)
	}
}

func TestLimiterCapForgetsLeastRecentlyActive(t *testing.T) {
	l := newLimiter()
	lim := limits{attempts: 1, window: time.Hour, maxUsers: 3}
	for i, u := range []string{"a", "b", "c"} {
		mustReserve(t, l, u, t0.Add(time.Duration(i)*time.Second), lim).commit(t0.Add(time.Duration(i) * time.Second))
	}
	// "a" is touched again (refused), so "b" is now the least recent.
	if _, _, ok := l.reserve("a", t0.Add(10*time.Second), lim); ok {
		t.Fatal("a allowed twice")
	}
	mustReserve(t, l, "d", t0.Add(11*time.Second), lim).commit(t0.Add(11 * time.Second))
	if n := l.tracked(); n != 3 {
		t.Fatalf("%d tracked, cap 3", n)
	}
	// a, c and d are still limited; b was forgotten and may try again.
	for _, u := range []string{"a", "c", "d"} {
		if _, _, ok := l.reserve(u, t0.Add(12*time.Second), lim); ok {
			t.Fatalf("%s was forgotten", u)
		}
	}
	mustReserve(t, l, "b", t0.Add(12*time.Second), lim).release()
}

func TestLimiterDropsExpiredUsersFirst(t *testing.T) {
	l := newLimiter()
	lim := limits{attempts: 1, window: time.Minute, maxUsers: 1000}
	for i := range 100 {
		mustReserve(t, l, fmt.Sprint("u", i), t0, lim).commit(t0)
	}
	mustReserve(t, l, "late", t0.Add(2*time.Minute), lim).commit(t0.Add(2 * time.Minute))
	if n := l.tracked(); n != 1 {
		t.Fatalf("%d users tracked after all others expired", n)
	}
}

func TestLimiterFollowsAReloadedLimit(t *testing.T) {
	l := newLimiter()
	five := limits{attempts: 5, window: time.Hour, maxUsers: 10}
	for i := range 4 {
		mustReserve(t, l, "alice", t0, five).commit(t0.Add(time.Duration(i) * time.Second))
	}
	two := limits{attempts: 2, window: time.Hour, maxUsers: 10}
	if _, wait, ok := l.reserve("alice", t0.Add(time.Minute), two); ok || wait != time.Hour-time.Minute+2*time.Second {
		t.Fatalf("after shrinking: ok=%v wait=%v (the newest two are kept)", ok, wait)
	}
	ten := limits{attempts: 10, window: time.Hour, maxUsers: 10}
	mustReserve(t, l, "alice", t0.Add(time.Minute), ten).release()
}

func TestLimiterKeyFoldsCase(t *testing.T) {
	if limiterKey("Alice") != limiterKey("alice") || limiterKey("bob") != "bob" {
		t.Fatal("limiter keys differ by case")
	}
}

func TestLimiterStateOutlivesAConfig(t *testing.T) {
	a := acquireLimiter("zone-test")
	b := acquireLimiter("zone-test") // the next config, before the old one is cleaned up
	releaseLimiter("zone-test")
	if a != b {
		t.Fatal("a second config got other state")
	}
	releaseLimiter("zone-test")
	if c := acquireLimiter("zone-test"); c == a {
		t.Fatal("state kept after its last user let go")
	}
	releaseLimiter("zone-test")
}

// BenchmarkLimiterExistingKey is the check of a known user: reserve and
// release one attempt.
func BenchmarkLimiterExistingKey(b *testing.B) {
	l := newLimiter()
	lim := limits{attempts: 5, window: time.Hour, maxUsers: defaultMaxUsers}
	now := t0
	first, _, _ := l.reserve("alice", now, lim)
	first.commit(now) // a user with one counted attempt
	b.ReportAllocs()
	for b.Loop() {
		r, _, ok := l.reserve("alice", now, lim)
		if ok {
			r.release()
		}
	}
}

// BenchmarkLimiterNewKey is a first attempt of a user the limiter does not
// know, at the cap: insert one, forget the least recently active.
func BenchmarkLimiterNewKey(b *testing.B) {
	l := newLimiter()
	lim := limits{attempts: 5, window: time.Hour, maxUsers: 1 << 10}
	keys := make([]string, 1<<20)
	for i := range keys {
		keys[i] = fmt.Sprint("user", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r, _, ok := l.reserve(keys[i%len(keys)], t0, lim)
		if ok {
			r.commit(t0)
		}
		i++
	}
}

// BenchmarkLimiterMemoryPerUser reports the heap one tracked user costs,
// with the default 5 attempts and each user holding one counted attempt.
func BenchmarkLimiterMemoryPerUser(b *testing.B) {
	const users = 100_000
	lim := limits{attempts: 5, window: time.Hour, maxUsers: users}
	var perUser float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := newLimiter()
		for i := range users {
			// The key is allocated here, as a request's user id is.
			r, _, _ := l.reserve(fmt.Sprintf("user-%08d", i), t0, lim)
			r.commit(t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perUser = float64(after.HeapAlloc-before.HeapAlloc) / users
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perUser, "B/user")
}
