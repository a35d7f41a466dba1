package caddyapppw

import (
	"math"
	"strings"
	"sync"
	"time"
)

// limiter is a sliding-window rate limiter keyed by user: at most limit
// counted attempts in any window. It is the state that must outlive a
// config reload, so it holds no configuration of its own: each call
// brings the limit, window and cap of the config that makes it.
//
// An attempt is reserved before the work and then either committed
// (counted) or released. Reserving closes the race the original endpoint
// had, where any number of concurrent requests could pass the check before
// the first one recorded its failure.
//
// Memory is bounded by maxUsers: users are kept in a list ordered by last
// activity, and reaching the cap forgets the least recently active user.
// Someone who floods distinct user ids can therefore reset the count of an
// idle user, but only by sending maxUsers new ids after that user's last
// attempt, and every attempt still has to pass Nextcloud's own brute-force
// protection. The other choice, refusing new users at the cap, would let
// the same flood lock out everyone.
type limiter struct {
	mu    sync.Mutex
	users map[string]*userWindow
	// head is the most recently active user, tail the least. Because a
	// user moves to the head on every reserve, every event of the tail is
	// at least as old as every event of anyone else, so expired users
	// gather at the tail and are dropped from there in O(1).
	head, tail *userWindow
}

// userWindow holds one user's counted attempts, oldest first, in a ring.
type userWindow struct {
	key        string
	prev, next *userWindow
	events     []int64 // Unix nanoseconds; a ring of len(events) = limit
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

// limiterKey is the user id a limit applies to. Nextcloud matches logins
// without regard to ASCII case, so "Alice" and "alice" are the same account
// to it and must share one count here; user ids are ASCII by validUserID.
func limiterKey(userID string) string {
	for i := 0; i < len(userID); i++ {
		if 'A' <= userID[i] && userID[i] <= 'Z' {
			return strings.ToLower(userID)
		}
	}
	return userID
}

// reservation is one attempt under way, in the in-process limiter (l, u)
// or in the shared one (shared, key, member). Exactly one of commit or
// release must follow; release after commit does nothing, so "defer
// release" is safe. A value, not an interface: the in-process path must
// not allocate.
type reservation struct {
	l    *limiter
	u    *userWindow
	done bool

	shared      *redisLimiter
	key, member string
	window      time.Duration
}

// reserve takes an attempt for key at now. When the user has no attempt
// left it returns ok false and how long until the oldest counted attempt
// leaves the window.
func (l *limiter) reserve(key string, now time.Time, lim limits) (res reservation, retryAfter time.Duration, ok bool) {
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()

	u := l.users[key]
	if u == nil {
		l.evict(t, lim)
		u = &userWindow{key: key, events: make([]int64, lim.attempts)}
		l.users[key] = u
	} else {
		l.unlink(u)
		u.resize(lim.attempts)
		u.expire(t, lim.window)
	}
	l.pushFront(u)

	if u.n+u.inflight >= lim.attempts {
		l.dropIfIdle(u)
		if u.n == 0 {
			// Every attempt is still in flight: none has an age yet.
			return reservation{}, time.Second, false
		}
		return reservation{}, time.Duration(u.events[u.start] + int64(lim.window) - t), false
	}
	u.inflight++
	return reservation{l: l, u: u}, 0, true
}

// commit counts the attempt at now.
func (r *reservation) commit(now time.Time) {
	if r.done {
		return
	}
	r.done = true
	if r.shared != nil {
		r.shared.commit(r.key, r.member, now, r.window)
		return
	}
	if r.l == nil {
		return
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	u := r.u
	u.inflight--
	if u.n == len(u.events) {
		// The limit shrank in a reload while this attempt ran.
		u.start = (u.start + 1) % len(u.events)
		u.n--
	}
	u.events[(u.start+u.n)%len(u.events)] = now.UnixNano()
	u.n++
}

// release gives the attempt back uncounted.
func (r *reservation) release() {
	if r.done {
		return
	}
	r.done = true
	if r.shared != nil {
		r.shared.release(r.key, r.member)
		return
	}
	if r.l == nil {
		return
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	r.u.inflight--
	r.l.dropIfIdle(r.u)
}

// tracked is the number of users the limiter holds state for.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.users)
}

// evict makes room for one more user: expired users go first, then, at
// the cap, the least recently active ones.
func (l *limiter) evict(t int64, lim limits) {
	for u := l.tail; u != nil && u.inflight == 0 && u.newest() <= t-int64(lim.window); u = l.tail {
		l.remove(u)
	}
	for len(l.users) >= lim.maxUsers && l.tail != nil {
		l.remove(l.tail)
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
// at e counts while t-e < window.
func (u *userWindow) expire(t int64, window time.Duration) {
	for u.n > 0 && u.events[u.start] <= t-int64(window) {
		u.start = (u.start + 1) % len(u.events)
		u.n--
	}
}

// newest is the time of the last counted event, or MinInt64 for none.
func (u *userWindow) newest() int64 {
	if u.n == 0 {
		return math.MinInt64
	}
	return u.events[(u.start+u.n-1)%len(u.events)]
}

// resize adapts the ring to a limit changed by a config reload, keeping
// the newest events.
func (u *userWindow) resize(limit int) {
	if len(u.events) == limit {
		return
	}
	ring := make([]int64, limit)
	keep := min(u.n, limit)
	for i := 0; i < keep; i++ {
		ring[i] = u.events[(u.start+u.n-keep+i)%len(u.events)]
	}
	u.events, u.start, u.n = ring, 0, keep
}

// retryAfterSeconds is N of API.md: max(1, ceil(d)).
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
