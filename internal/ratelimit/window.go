package ratelimit

import (
	"math"
	"sync"
	"time"
)

// zoneState is the in-process state of one zone's limit, keyed by account
// (or, for the per-address limit, by client address): at most limit
// counted attempts in any window. It is the state that must outlive a
// config reload, so it holds no configuration of its own: each call
// brings the limits of the config that makes it.
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
type zoneState struct {
	mu    sync.Mutex
	users map[string]*userWindow
	// head is the most recently active user, tail the least. A user moves
	// to the head on every reserve, so expired users gather at the tail
	// and are dropped from there.
	head, tail *userWindow
	// spare is the window of the user dropped last, which the next new
	// user gets: at the cap, under a flood of new user ids, each one
	// replaces one, and taking a new key then allocates nothing.
	spare *userWindow
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

func newZoneState() *zoneState {
	return &zoneState{users: make(map[string]*userWindow)}
}

// reserve adds key to a at now, or returns how long until key has an
// attempt left.
func (s *zoneState) reserve(a *Attempt, key string, now time.Time, lim limits) time.Duration {
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()

	u := s.touch(key, t, lim)
	if u.n+u.inflight >= lim.attempts {
		s.dropIfIdle(u)
		if u.n == 0 {
			// Every attempt is still in flight: none has an age yet.
			return time.Second
		}
		// > 0: what is left is younger than the window.
		return time.Duration(u.events[u.start] + int64(lim.window) - t)
	}
	u.inflight++
	a.held[a.nh] = u
	a.nh++
	return 0
}

// finish ends the attempt held on each of windows: counted at t when
// commit is set, else given back.
func (s *zoneState) finish(windows []*userWindow, commit bool, t int64, lim limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range windows {
		u.inflight--
		if commit {
			u.expire(t, lim.window)
			u.push(t, lim.attempts)
		} else {
			s.dropIfIdle(u)
		}
	}
}

// count records an attempt at t against key without a reservation: the
// account Nextcloud named only after it was asked. The attempt happened,
// so it is counted even when key is over its limit (the oldest event
// then falls out, which moves the key's Retry-After later).
func (s *zoneState) count(keys []string, t int64, lim limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range keys {
		s.touch(key, t, lim).push(t, lim.attempts)
	}
}

// touch returns key's window, made current at t and moved to the head of
// the activity list: a new one (after making room for it) or the key's
// own, fitted to the limit of the config that calls and cleared of the
// events that left the window. s.mu must be held.
func (s *zoneState) touch(key string, t int64, lim limits) *userWindow {
	u := s.users[key]
	if u == nil {
		s.evict(t, lim)
		u = s.newWindow(key)
	} else {
		s.unlink(u)
		u.fit(lim.attempts)
		u.expire(t, lim.window)
	}
	s.pushFront(u)
	return u
}

// tracked is the number of keys the state holds.
func (s *zoneState) tracked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.users)
}

// evict makes room for one more user: expired users go first, then, at
// the cap, the least recently active ones. Users with an attempt in
// flight are skipped by both.
func (s *zoneState) evict(t int64, lim limits) {
	for u := s.tail; u != nil; {
		prev := u.prev
		if u.inflight == 0 {
			if u.newest() > t-int64(lim.window) {
				break
			}
			s.remove(u)
		}
		u = prev
	}
	for u := s.tail; u != nil && len(s.users) >= lim.maxUsers; {
		prev := u.prev
		if u.inflight == 0 {
			s.remove(u)
		}
		u = prev
	}
}

func (s *zoneState) dropIfIdle(u *userWindow) {
	if u.n == 0 && u.inflight == 0 && s.users[u.key] == u {
		s.remove(u)
	}
}

func (s *zoneState) remove(u *userWindow) {
	s.unlink(u)
	delete(s.users, u.key)
	// No attempt holds u (it has none in flight): it is free.
	s.spare = u
}

// newWindow adds an empty window for key, the spare one if there is one.
// A spare's ring is kept when it is small (the one or two events most
// users have), so a new user's first event needs none either.
func (s *zoneState) newWindow(key string) *userWindow {
	u := s.spare
	if u == nil {
		u = new(userWindow)
	} else {
		s.spare = nil
		events := u.events
		if len(events) > 4 {
			events = nil
		}
		*u = userWindow{events: events}
	}
	u.key = key
	s.users[key] = u
	return u
}

func (s *zoneState) pushFront(u *userWindow) {
	u.prev, u.next = nil, s.head
	if s.head != nil {
		s.head.prev = u
	}
	s.head = u
	if s.tail == nil {
		s.tail = u
	}
}

func (s *zoneState) unlink(u *userWindow) {
	if u.prev != nil {
		u.prev.next = u.next
	} else if s.head == u {
		s.head = u.next
	}
	if u.next != nil {
		u.next.prev = u.prev
	} else if s.tail == u {
		s.tail = u.prev
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
