package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

// reserve is an attempt on key alone, on state s under lim: what a config
// with these limits does. ok is wait == 0.
func reserve(s *zoneState, key string, now time.Time, lim limits) (a *Attempt, wait time.Duration, ok bool) {
	a = new(Attempt)
	wait, _ = (&Local{state: s, lim: lim}).Reserve(a, key, now)
	return a, wait, wait == 0
}

func mustReserve(t *testing.T, l *zoneState, key string, now time.Time, lim limits) *Attempt {
	t.Helper()
	a, wait, ok := reserve(l, key, now, lim)
	if !ok {
		t.Fatalf("%s refused at %v (wait %v)", key, now.Sub(t0), wait)
	}
	return a
}

func TestLimiterWindowEdges(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 3, window: time.Hour, maxUsers: 10}
	for i := range 3 {
		r := mustReserve(t, l, "alice", t0.Add(time.Duration(i)*time.Minute), lim)
		r.Commit(t0.Add(time.Duration(i) * time.Minute))
	}
	// Full: the oldest attempt (t0) leaves the window at t0+1h.
	_, wait, ok := reserve(l, "alice", t0.Add(30*time.Minute), lim)
	if ok || wait != 30*time.Minute {
		t.Fatalf("ok=%v wait=%v", ok, wait)
	}
	_, wait, ok = reserve(l, "alice", t0.Add(time.Hour-time.Nanosecond), lim)
	if ok || wait != time.Nanosecond {
		t.Fatalf("one ns before the edge: ok=%v wait=%v", ok, wait)
	}
	// At exactly t0+1h the first attempt no longer counts.
	r := mustReserve(t, l, "alice", t0.Add(time.Hour), lim)
	r.Release()
	// Other users are not affected.
	mustReserve(t, l, "bob", t0, lim).Release()
}

func TestLimiterReleaseDoesNotCount(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 1, window: time.Hour, maxUsers: 10}
	for range 10 {
		r := mustReserve(t, l, "alice", t0, lim)
		r.Release()
		r.Commit(t0) // after release: no effect
	}
	if n := l.tracked(); n != 0 {
		t.Fatalf("released attempts left %d users tracked", n)
	}
}

func TestLimiterInflightReservationsBound(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 2, window: time.Hour, maxUsers: 10}
	a := mustReserve(t, l, "alice", t0, lim)
	b := mustReserve(t, l, "alice", t0, lim)
	// Both still running: a third concurrent attempt is refused.
	if _, wait, ok := reserve(l, "alice", t0, lim); ok || wait != time.Second {
		t.Fatalf("third concurrent attempt: ok=%v wait=%v", ok, wait)
	}
	a.Release()
	c := mustReserve(t, l, "alice", t0, lim)
	b.Commit(t0)
	c.Commit(t0.Add(time.Second))
	if _, wait, ok := reserve(l, "alice", t0.Add(time.Minute), lim); ok || wait != 59*time.Minute {
		t.Fatalf("ok=%v wait=%v", ok, wait)
	}
}

func TestLimiterCapForgetsLeastRecentlyActive(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 1, window: time.Hour, maxUsers: 3}
	for i, u := range []string{"a", "b", "c"} {
		mustReserve(t, l, u, t0.Add(time.Duration(i)*time.Second), lim).Commit(t0.Add(time.Duration(i) * time.Second))
	}
	// "a" is touched again (refused), so "b" is now the least recent.
	if _, _, ok := reserve(l, "a", t0.Add(10*time.Second), lim); ok {
		t.Fatal("a allowed twice")
	}
	mustReserve(t, l, "d", t0.Add(11*time.Second), lim).Commit(t0.Add(11 * time.Second))
	if n := l.tracked(); n != 3 {
		t.Fatalf("%d tracked, cap 3", n)
	}
	// a, c and d are still limited; b was forgotten and may try again.
	for _, u := range []string{"a", "c", "d"} {
		if _, _, ok := reserve(l, u, t0.Add(12*time.Second), lim); ok {
			t.Fatalf("%s was forgotten", u)
		}
	}
	mustReserve(t, l, "b", t0.Add(12*time.Second), lim).Release()
}

func TestLimiterDropsExpiredUsersFirst(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 1, window: time.Minute, maxUsers: 1000}
	for i := range 100 {
		mustReserve(t, l, fmt.Sprint("u", i), t0, lim).Commit(t0)
	}
	mustReserve(t, l, "late", t0.Add(2*time.Minute), lim).Commit(t0.Add(2 * time.Minute))
	if n := l.tracked(); n != 1 {
		t.Fatalf("%d users tracked after all others expired", n)
	}
}

func TestLimiterFollowsAReloadedLimit(t *testing.T) {
	l := newZoneState()
	five := limits{attempts: 5, window: time.Hour, maxUsers: 10}
	for i := range 4 {
		mustReserve(t, l, "alice", t0, five).Commit(t0.Add(time.Duration(i) * time.Second))
	}
	two := limits{attempts: 2, window: time.Hour, maxUsers: 10}
	if _, wait, ok := reserve(l, "alice", t0.Add(time.Minute), two); ok || wait != time.Hour-time.Minute+2*time.Second {
		t.Fatalf("after shrinking: ok=%v wait=%v (the newest two are kept)", ok, wait)
	}
	ten := limits{attempts: 10, window: time.Hour, maxUsers: 10}
	mustReserve(t, l, "alice", t0.Add(time.Minute), ten).Release()
}

// A user with one counted attempt costs the same whatever the limit: the
// ring grows with the events it holds.
func TestLimiterMemoryPerUserDoesNotGrowWithAttempts(t *testing.T) {
	capAfter := func(attempts, events int) int {
		l := newZoneState()
		lim := limits{attempts: attempts, window: time.Hour, maxUsers: 10}
		for i := range events {
			mustReserve(t, l, "alice", t0, lim).Commit(t0.Add(time.Duration(i) * time.Second))
		}
		return cap(l.users["alice"].events)
	}
	if a, b := capAfter(5, 1), capAfter(1_000_000, 1); a != b || b > 1 {
		t.Fatalf("one event: capacity %d at attempts=5, %d at attempts=1000000", a, b)
	}
	if c := capAfter(1_000_000, 3); c > 4 {
		t.Fatalf("three events at attempts=1000000: capacity %d", c)
	}
	if c := capAfter(5, 5); c != 5 {
		t.Fatalf("five events at attempts=5: capacity %d, want exactly the limit", c)
	}
}

// The ring that grows, wraps, shrinks and follows reloaded limits gives
// the answers of a plain list of events, operation after operation.
func TestLimiterRingMatchesAList(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l := newZoneState()
	var (
		model    []time.Time // counted attempts, oldest first
		inflight []heldAttempt
		now      = t0
	)
	for step := range 20_000 {
		lim := limits{attempts: 1 + rng.IntN(9), window: time.Duration(10+rng.IntN(50)) * time.Second, maxUsers: 10}
		now = now.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
		// The model: drop what left the window, keep at most the limit.
		for len(model) > 0 && !model[0].After(now.Add(-lim.window)) {
			model = model[1:]
		}
		if len(model) > lim.attempts {
			model = model[len(model)-lim.attempts:]
		}
		wantOK := len(model)+len(inflight) < lim.attempts
		var wantWait time.Duration
		switch {
		case wantOK:
		case len(model) == 0:
			wantWait = time.Second
		default:
			wantWait = model[0].Add(lim.window).Sub(now)
		}
		r, wait, ok := reserve(l, "alice", now, lim)
		if ok != wantOK || wait != wantWait {
			t.Fatalf("step %d: ok=%v wait=%v, want ok=%v wait=%v (%d counted, %d in flight, limit %d)",
				step, ok, wait, wantOK, wantWait, len(model), len(inflight), lim.attempts)
		}
		if ok {
			inflight = append(inflight, heldAttempt{r, lim})
		}
		if len(inflight) > 0 && rng.IntN(3) > 0 {
			i := rng.IntN(len(inflight))
			done := inflight[i]
			inflight = append(inflight[:i], inflight[i+1:]...)
			if rng.IntN(2) == 0 {
				done.r.Release()
				continue
			}
			// Counted under the limits it was reserved with: what left
			// its window goes, and the oldest beyond its limit.
			done.r.Commit(now)
			for len(model) > 0 && !model[0].After(now.Add(-done.lim.window)) {
				model = model[1:]
			}
			model = append(model, now)
			if len(model) > done.lim.attempts {
				model = model[len(model)-done.lim.attempts:]
			}
		}
		if u := l.users["alice"]; u != nil && cap(u.events) > max(2*u.n, 4) && cap(u.events) > lim.attempts {
			t.Fatalf("step %d: capacity %d for %d events, limit %d", step, cap(u.events), u.n, lim.attempts)
		}
	}
}

type heldAttempt struct {
	r   *Attempt
	lim limits
}

// An attempt is held on every account it touches and counted against
// each; the account Nextcloud named afterwards is counted even over its
// limit, and a name held twice costs one attempt.
func TestLimiterAttemptCountsAgainstEveryKey(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 2, window: time.Hour, maxUsers: 100}
	z := &Local{state: l, lim: lim}
	attempt := func(at time.Duration, keys ...string) (*Attempt, time.Duration, bool) {
		var r Attempt
		for _, k := range keys {
			wait, err := z.Reserve(&r, k, t0.Add(at))
			if err != nil {
				t.Fatal(err)
			}
			if wait > 0 {
				r.Release()
				return nil, wait, false
			}
		}
		return &r, 0, true
	}
	r, _, _ := attempt(0, "x0001", "victim", "x0001")
	r.CountAlso("uid-victim")
	r.Commit(t0)
	r, _, _ = attempt(time.Minute, "x0002", "victim")
	r.CountAlso("uid-victim")
	r.Commit(t0.Add(time.Minute))
	// victim is full: a third throwaway id is refused on it, and gives
	// its own key back.
	if _, wait, ok := attempt(2*time.Minute, "x0003", "victim"); ok || wait != 58*time.Minute {
		t.Fatalf("third guess at victim: ok=%v wait=%v", ok, wait)
	}
	if _, ok := l.users["x0003"]; ok {
		t.Fatal("the refused attempt kept its first key")
	}
	// One attempt per key: x0001 was held once, so it has one left.
	mustReserve(t, l, "x0001", t0.Add(2*time.Minute), lim).Release()
	// The answered uid is full too, and counting over the limit moves its
	// Retry-After: the newest two of three are kept.
	r, _, _ = attempt(3*time.Minute, "x0004")
	r.CountAlso("uid-victim")
	r.Commit(t0.Add(3 * time.Minute))
	if _, wait, ok := reserve(l, "uid-victim", t0.Add(4*time.Minute), lim); ok || wait != 57*time.Minute {
		t.Fatalf("uid after a third count: ok=%v wait=%v", ok, wait)
	}
	// Released attempts count nowhere.
	r, _, _ = attempt(5*time.Minute, "x0005", "other")
	r.CountAlso("uid-other")
	r.Release()
	for _, k := range []string{"x0005", "other", "uid-other"} {
		if _, ok := l.users[k]; ok {
			t.Fatalf("%s tracked after a released attempt", k)
		}
	}
}

// At the cap, a user with an attempt in flight is not forgotten: its
// attempt would be counted into a window nobody reads, and the in-flight
// bound would be lost.
func TestLimiterCapSkipsUsersInFlight(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 1, window: time.Hour, maxUsers: 2}
	running := mustReserve(t, l, "alice", t0, lim) // least recently active
	mustReserve(t, l, "bob", t0.Add(time.Second), lim).Commit(t0.Add(time.Second))
	mustReserve(t, l, "carol", t0.Add(2*time.Second), lim).Commit(t0.Add(2 * time.Second))
	// alice's attempt is still running: a second one is refused.
	if _, _, ok := reserve(l, "alice", t0.Add(3*time.Second), lim); ok {
		t.Fatal("alice's in-flight attempt was forgotten at the cap")
	}
	running.Commit(t0.Add(4 * time.Second))
	if _, wait, ok := reserve(l, "alice", t0.Add(5*time.Second), lim); ok || wait != time.Hour-time.Second {
		t.Fatalf("alice's committed attempt: ok=%v wait=%v", ok, wait)
	}
	if n := l.tracked(); n > 3 {
		t.Fatalf("%d users tracked, cap 2 plus one in flight", n)
	}
}

func TestMillionUserIDsStayBounded(t *testing.T) {
	l := newZoneState()
	lim := limits{attempts: 5, window: time.Hour, maxUsers: DefaultMaxUsers}
	now := t0
	legit, _, _ := reserve(l, "alice", now, lim)
	legit.Commit(now)
	for i := range 1_000_000 {
		r, _, ok := reserve(l, fmt.Sprint("flood", i), now, lim)
		if !ok {
			t.Fatalf("a new user id was refused at %d", i)
		}
		r.Commit(now)
		if i%50_000 == 0 {
			// The legitimate user keeps using the API, so stays recent.
			r, _, ok := reserve(l, "alice", now, lim)
			if !ok {
				t.Fatalf("alice refused at %d", i)
			}
			r.Release()
		}
	}
	if n := l.tracked(); n != DefaultMaxUsers {
		t.Fatalf("%d users tracked, cap %d", n, DefaultMaxUsers)
	}
}

// A new user at the cap takes the window of the user just forgotten
// (no allocation: a flood of new user ids costs no garbage), and starts
// with none of that user's attempts, whatever the size of its ring.
func TestLimiterNewUserGetsAClearedWindow(t *testing.T) {
	for _, attempts := range []int{1, 2, 5, 100} {
		l := newZoneState()
		lim := limits{attempts: attempts, window: time.Hour, maxUsers: 2}
		for _, key := range []string{"alice", "bob"} {
			for range attempts {
				mustReserve(t, l, key, t0, lim).Commit(t0)
			}
			if _, _, ok := reserve(l, key, t0, lim); ok {
				t.Fatalf("%s not out of attempts", key)
			}
		}
		// carol makes alice the forgotten one; carol and then dave get
		// a forgotten user's window.
		for _, key := range []string{"carol", "dave"} {
			for i := range attempts {
				r, wait, ok := reserve(l, key, t0, lim)
				if !ok {
					t.Fatalf("attempts=%d: %s refused at its attempt %d (wait %v): it inherited a forgotten user's count", attempts, key, i+1, wait)
				}
				r.Commit(t0)
			}
			if _, _, ok := reserve(l, key, t0, lim); ok {
				t.Fatalf("attempts=%d: %s got more than %d attempts", attempts, key, attempts)
			}
		}
	}

	local := &Local{state: newZoneState(), lim: limits{attempts: 5, window: time.Hour, maxUsers: 16}}
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprint("user-", i)
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		var a Attempt
		if wait, _ := local.Reserve(&a, keys[i%len(keys)], t0); wait == 0 {
			a.Commit(t0)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("a new user at the cap: %v allocations, want none", allocs)
	}
}

// BenchmarkLimiterExistingKey is the check of a known user: reserve and
// release one attempt.
func BenchmarkLimiterExistingKey(b *testing.B) {
	l := &Local{state: newZoneState(), lim: limits{attempts: 5, window: time.Hour, maxUsers: DefaultMaxUsers}}
	now := t0
	var first Attempt
	_, _ = l.Reserve(&first, "alice", now)
	first.Commit(now) // a user with one counted attempt
	b.ReportAllocs()
	for b.Loop() {
		var r Attempt
		if wait, _ := l.Reserve(&r, "alice", now); wait == 0 {
			r.Release()
		}
	}
}

// BenchmarkLimiterNewKey is a first attempt of a user the limiter does not
// know, at the cap: insert one, forget the least recently active.
func BenchmarkLimiterNewKey(b *testing.B) {
	l := &Local{state: newZoneState(), lim: limits{attempts: 5, window: time.Hour, maxUsers: 1 << 10}}
	keys := make([]string, 1<<20)
	for i := range keys {
		keys[i] = fmt.Sprint("user", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var r Attempt
		if wait, _ := l.Reserve(&r, keys[i%len(keys)], t0); wait == 0 {
			r.Commit(t0)
		}
		i++
	}
}

// BenchmarkLimiterMemoryPerUser reports the heap one tracked user costs,
// each user holding one counted attempt, at the default 5 attempts and at
// 1000: the two rows must be about the same. It only reports.
func BenchmarkLimiterMemoryPerUser(b *testing.B) {
	for _, attempts := range []int{5, 1000} {
		b.Run(fmt.Sprint("attempts=", attempts), func(b *testing.B) {
			const users = 100_000
			lim := limits{attempts: attempts, window: time.Hour, maxUsers: users}
			var perUser float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				l := newZoneState()
				for i := range users {
					// The key is allocated here, as a request's user id is.
					r, _, _ := reserve(l, fmt.Sprintf("user-%08d", i), t0, lim)
					r.Commit(t0)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perUser = float64(after.HeapAlloc-before.HeapAlloc) / users
				runtime.KeepAlive(l)
			}
			b.ReportMetric(perUser, "B/user")
		})
	}
}
