package caddyapppw

import "time"

// maxAttemptKeys is the most keys one attempt touches: the path's user id,
// the login name sent to Nextcloud, and the uid Nextcloud answered with.
const maxAttemptKeys = 3

// rateLimit is one limit as a config applies it: its in-process state,
// its Redis when the limit is shared, and its numbers. The per-account
// and the per-address limits are two of these over the same types.
type rateLimit struct {
	local  *limiter
	shared *redisLimiter // nil: in process only
	lim    limits
}

// userLimit is the per-account limit of h.
func (h *Handler) userLimit() rateLimit {
	return rateLimit{local: h.limiter, shared: h.shared, lim: h.limits}
}

// reserve adds key to the attempt res, or says how long key is blocked.
// A key res holds already is not taken twice: one attempt, one count per
// account, however many of its names are the same.
func (z rateLimit) reserve(res *reservation, key string, now time.Time) (time.Duration, bool, error) {
	if res.has(key) {
		return 0, true, nil
	}
	res.local, res.lim = z.local, z.lim
	if z.shared != nil {
		return z.shared.reserveInto(res, key, now, z.lim)
	}
	wait, ok := z.local.reserveInto(res, key, now, z.lim)
	return wait, ok, nil
}

// reservation is one attempt under way, held on every key it touches: in
// the in-process limiter (windows), on Redis (keys), or both when Redis
// failed half way and the attempt fell back. Exactly one of commit or
// release must follow; release after commit does nothing, so "defer
// release" is safe. A value with fixed arrays, not an interface or
// slices: the in-process path must not allocate.
type reservation struct {
	done bool
	lim  limits

	// In process: the windows holding one in-flight slot of this attempt.
	// local also receives the keys counted without a reservation when
	// nothing is held on Redis.
	local   *limiter
	windows [maxAttemptKeys]*userWindow
	nw      int

	// On Redis: the keys whose sorted sets hold "p:<member>". conn is a
	// reference held until the end, so commit and release reach Redis
	// even after a reload closed the config that reserved.
	shared *redisLimiter
	conn   *redisConn
	member string
	keys   [maxAttemptKeys]string
	nk     int
	// stale are keys where a call that failed (a reply after the
	// timeout) may still have added "p:<member>": cleared at the end.
	stale [maxAttemptKeys]string
	ns    int

	// also are the keys counted at commit without a reservation: the uid
	// Nextcloud answered with, known only after it was asked.
	also [maxAttemptKeys]string
	na   int
}

// has reports whether the attempt holds key or will count it.
func (r *reservation) has(key string) bool {
	for _, u := range r.windows[:r.nw] {
		if u.key == key {
			return true
		}
	}
	for _, k := range r.keys[:r.nk] {
		if k == key {
			return true
		}
	}
	for _, k := range r.also[:r.na] {
		if k == key {
			return true
		}
	}
	return false
}

func (r *reservation) addLocal(l *limiter, u *userWindow, lim limits) {
	r.local, r.lim = l, lim
	r.windows[r.nw] = u
	r.nw++
}

func (r *reservation) addShared(key string) {
	r.keys[r.nk] = key
	r.nk++
}

func (r *reservation) addStale(key string) {
	r.stale[r.ns] = key
	r.ns++
}

// countAlso counts the attempt against key too when it is committed: the
// uid Nextcloud answered with. The attempt has happened, so key is not
// reserved and cannot refuse it; if key is over its limit already, this
// attempt still counts.
func (r *reservation) countAlso(key string) {
	if r.done || r.has(key) || r.na == len(r.also) {
		return
	}
	r.also[r.na] = key
	r.na++
}

// commit counts the attempt at now against every key it touches.
func (r *reservation) commit(now time.Time) { r.finish(true, now) }

// release gives the attempt back uncounted.
func (r *reservation) release() { r.finish(false, time.Time{}) }

func (r *reservation) finish(commit bool, now time.Time) {
	if r.done {
		return
	}
	r.done = true
	t := now.UnixNano()
	if r.nw > 0 {
		r.local.finish(r.windows[:r.nw], commit, t, r.lim)
	}
	countLocally := commit && r.na > 0
	if r.conn != nil {
		answered := r.shared.finish(r, commit)
		switch {
		case commit && !answered:
			// Fail-local, as for a reserve: the attempt still counts
			// in this replica.
			r.local.count(r.keys[:r.nk], t, r.lim)
		case r.nk > 0:
			countLocally = false // counted on Redis with the others
		}
		r.conn.unref()
	}
	if countLocally {
		r.local.count(r.also[:r.na], t, r.lim)
	}
}
