package caddyapppw

import (
	"math"
	"sync"
	"time"
)

// limiter is a sliding-window rate limiter keyed by account (or, for the
// per-address limit, by client address): at most limit counted attempts
// in any window. It is the state that must outlive a config reload, so it
// holds no configuration of its own: each call brings the limit, window
// and cap of the config that makes it.
//
// An attempt is reserved before the work and then either committed
// (counted) or released. Reserving closes the race the original endpoint
// had, where any number of concurrent requests could pass the check before
// the first one recorded its failure.
//
// Memory is bounded by maxUsers: users are kept in a list ordered by last
// activity, and reaching the cap forgets the least recently active user
// that has no attempt in flight. Someone who floods distinct user ids can
// therefore reset the count of an idle user, but only by sending maxUsers
// new ids after that user's last attempt, and every attempt still has to
// pass Nextcloud's own brute-force protection. The other choice, refusing
// new users at the cap, would let the same flood lock out everyone. A user
// with an attempt in flight is never forgotten: its attempt would be
// counted into a window nobody reads, and the in-flight bound would be
// lost. So the cap can be passed by the attempts in flight at most.
type limiter struct {
	mu    sync.Mutex
	users map[string]*userWindow
	// head is the most recently active user, tail the least. A user moves
	// to the head on every reserve, so expired users gather at the tail
	// and are dropped from there.
	head, tail *userWindow
}

// userWindow holds one user's counted attempts, oldest first, in a ring
// that grows with the events it holds, up to the limit: a user with one
// counted attempt costs the same whatever the configured limit (a limit
// of a million must not cost 8 MB per user).
type userWindow struct {
	key        string
	prev, next *userWindow
	events     []int64 // Unix nanoseconds; a ring, len(events) ≤ limit
	start, n   int
	inflight   int
}

// limits is the configuration a call brings.
type limits struct {
	attempts int
	window   time.Duration
	maxUsers int
}

func newLimiter() *limiter {
	return &limiter{users: make(map[string]*userWindow)}
}

// reserve takes an attempt for key at now. When the user has no attempt
// left it returns ok false and how long until the oldest counted attempt
// leaves the window.
func (l *limiter) reserve(key string, now time.Time, lim limits) (res reservation, retryAfter time.Duration, ok bool) {
	retryAfter, ok = l.reserveInto(&res, key, now, lim)
	return res, retryAfter, ok
}

// reserveInto adds key to res: one more account the same attempt is
// counted against.
func (l *limiter) reserveInto(res *reservation, key string, now time.Time, lim limits) (time.Duration, bool) {
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()

	u := l.users[key]
	if u == nil {
		l.evict(t, lim)
		u = &userWindow{key: key}
		l.users[key] = u
	} else {
		l.unlink(u)
		u.fit(lim.attempts)
		u.expire(t, lim.window)
	}
	l.pushFront(u)

	if u.n+u.inflight >= lim.attempts {
		l.dropIfIdle(u)
		if u.n == 0 {
			// Every attempt is still in flight: none has an age yet.
			return time.Second, false
		}
		return time.Duration(u.events[u.start] + int64(lim.window) - t), false
	}
	u.inflight++
	res.addLocal(l, u, lim)
	return 0, true
}

// finish ends the attempt held on each of windows: counted at t when
// commit is set, else given back.
func (l *limiter) finish(windows []*userWindow, commit bool, t int64, lim limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range windows {
		u.inflight--
		if commit {
			u.expire(t, lim.window)
			u.push(t, lim.attempts)
		} else {
			l.dropIfIdle(u)
		}
	}
}

// count records an attempt at t against key without a reservation: the
// account Nextcloud named only after it was asked. The attempt happened,
// so it is counted even when key is over its limit (the oldest event
// then falls out, which moves the key's Retry-After later).
func (l *limiter) count(keys []string, t int64, lim limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, key := range keys {
		u := l.users[key]
		if u == nil {
			l.evict(t, lim)
			u = &userWindow{key: key}
			l.users[key] = u
		} else {
			l.unlink(u)
			u.fit(lim.attempts)
			u.expire(t, lim.window)
		}
		l.pushFront(u)
		u.push(t, lim.attempts)
	}
}

// tracked is the number of users the limiter holds state for.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.users)
}

// evict makes room for one more user: expired users go first, then, at
// the cap, the least recently active ones. Users with an attempt in
// flight are skipped by both.
func (l *limiter) evict(t int64, lim limits) {
	for u := l.tail; u != nil; {
		prev := u.prev
		if u.inflight == 0 {
			if u.newest() > t-int64(lim.window) {
				break
			}
			l.remove(u)
		}
		u = prev
	}
	for u := l.tail; u != nil && len(l.users) >= lim.maxUsers; {
		prev := u.prev
		if u.inflight == 0 {
			l.remove(u)
		}
		u = prev
	}
}

func (l *limiter) dropIfIdle(u *userWindow) {
	if u.n == 0 && u.inflight == 0 && l.users[u.key] == u {
		l.remove(u)
	}
}

func (l *limiter) remove(u *userWindow) {
	l.unlink(u)
	delete(l.users, u.key)
}

func (l *limiter) pushFront(u *userWindow) {
	u.prev, u.next = nil, l.head
	if l.head != nil {
		l.head.prev = u
	}
	l.head = u
	if l.tail == nil {
		l.tail = u
	}
}

func (l *limiter) unlink(u *userWindow) {
	if u.prev != nil {
		u.prev.next = u.next
	} else if l.head == u {
		l.head = u.next
	}
	if u.next != nil {
		u.next.prev = u.prev
	} else if l.tail == u {
		l.tail = u.prev
	}
	u.prev, u.next = nil, nil
}

// expire drops the events that have left the window ending at t. An event
// at e counts while t-e < window. A ring left mostly empty shrinks, so
// memory follows the events held.
func (u *userWindow) expire(t int64, window time.Duration) {
	k := 0
	for k < u.n && u.events[(u.start+k)%len(u.events)] <= t-int64(window) {
		k++
	}
	u.dropOldest(k)
	if len(u.events) > 4 && u.n <= len(u.events)/4 {
		u.realloc(2 * u.n)
	}
}

// newest is the time of the last counted event, or MinInt64 for none.
func (u *userWindow) newest() int64 {
	if u.n == 0 {
		return math.MinInt64
	}
	return u.events[(u.start+u.n-1)%len(u.events)]
}

// push records an event at t. A ring that holds limit events already
// drops its oldest (a reload shrank the limit while the attempt ran, or
// the key was counted without a reservation); a full ring below the limit
// doubles.
func (u *userWindow) push(t int64, limit int) {
	if u.n >= limit {
		u.dropOldest(u.n - limit + 1)
	}
	if u.n == len(u.events) {
		u.realloc(min(limit, max(1, 2*len(u.events))))
	}
	u.events[(u.start+u.n)%len(u.events)] = t
	u.n++
}

// fit adapts the ring to a limit changed by a config reload, keeping the
// newest events.
func (u *userWindow) fit(limit int) {
	if u.n > limit {
		u.dropOldest(u.n - limit)
	}
	if len(u.events) > limit {
		u.realloc(u.n)
	}
}

func (u *userWindow) dropOldest(k int) {
	if k > 0 {
		u.start = (u.start + k) % len(u.events)
		u.n -= k
	}
}

// realloc moves the events, oldest first, to a ring of size c ≥ n; c = 0
// frees it.
func (u *userWindow) realloc(c int) {
	if c == 0 {
		u.events, u.start = nil, 0
		return
	}
	ring := make([]int64, c)
	for i := 0; i < u.n; i++ {
		ring[i] = u.events[(u.start+i)%len(u.events)]
	}
	u.events, u.start = ring, 0
}

// retryAfterSeconds is N of API.md: max(1, ceil(d)).
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
