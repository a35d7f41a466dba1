// Package ratelimit is the app_password handler's limit on attempts: per
// account, and optionally per client address, over a sliding window, in
// process or shared among Caddy replicas on Redis.
//
// The handler sees one small interface, Limiter, and one value, Attempt.
// The in-process limiter (Local) is complete on its own; the shared one
// (Redis) wraps a Local and falls back to it when Redis does not answer.
// The local one knows nothing of Redis.
//
// The state that must outlive a config reload (the counts) is kept in a
// caddy.UsagePool by zone, as reverse_proxy keeps upstream health and
// caddy-ratelimit keeps its zones; the numbers (attempts, window, cap)
// belong to each config and travel with its Limiter.
package ratelimit

import "time"

// Limiter is one rate limit as a config applies it.
//
// An attempt is reserved before the work and ended after it: counted
// (Attempt.Commit) or given back (Attempt.Release). Reserving closes the
// race the original endpoint had, where any number of concurrent requests
// could pass the check before the first one recorded its failure.
type Limiter interface {
	// Reserve adds key to the attempt a: one more account (or address)
	// the same attempt is counted against. A key a holds already is not
	// taken twice: one attempt, one count per account, however many of
	// its names are the same. When key has no attempt left, retryAfter
	// is how long until one is (always > 0) and a holds nothing more. err
	// is set only when a shared limiter cannot answer and is configured
	// to deny then (on_error deny).
	Reserve(a *Attempt, key string, now time.Time) (retryAfter time.Duration, err error)

	// Close lets go of the limiter's share of the state and connections;
	// they live on while another config uses them, and an attempt that
	// is still running ends normally.
	Close() error
}

// limits are the numbers of one limit, as the config that applies it
// says them.
type limits struct {
	attempts int
	window   time.Duration
	maxUsers int
}

// maxAttemptKeys is the most keys one attempt touches: the path's user id,
// the login name sent to Nextcloud, and the uid Nextcloud answered with.
const maxAttemptKeys = 3

// Attempt is one attempt under way, held on every key it touches.
// Exactly one of Commit or Release must follow its reservations; Release
// after Commit does nothing, so "defer a.Release()" is safe. Its zero
// value is ready; one Attempt is reserved on one Limiter only.
//
// It is a value with fixed arrays: the in-process path must not
// allocate. What a shared limiter holds lives behind shared, which only
// the Redis limiter sets.
type Attempt struct {
	// The limiter that reserved: one of the two. Pointers to the concrete
	// types rather than a Limiter, so that ending an attempt is a static
	// call and an Attempt on the stack stays there.
	local *Local
	redis *Redis
	done  bool

	// held are the in-process windows holding one in-flight slot.
	held [maxAttemptKeys]*userWindow
	nh   int

	// shared is the part held on Redis; nil unless the attempt reached it.
	shared *sharedHold

	// also are the keys counted at commit without a reservation: the uid
	// Nextcloud answered with, known only after it was asked.
	also [maxAttemptKeys]string
	na   int
}

// claim makes l or r (one is nil) the limiter of a.
func (a *Attempt) claim(l *Local, r *Redis) {
	switch {
	case a.local == nil && a.redis == nil:
		a.local, a.redis = l, r
	case a.local != l || a.redis != r:
		panic("ratelimit: one Attempt reserved on two limiters")
	}
}

// holds reports whether the attempt holds key or will count it.
func (a *Attempt) holds(key string) bool {
	for _, u := range a.held[:a.nh] {
		if u.key == key {
			return true
		}
	}
	if a.shared != nil {
		for _, k := range a.shared.keys[:a.shared.nk] {
			if k == key {
				return true
			}
		}
	}
	for _, k := range a.also[:a.na] {
		if k == key {
			return true
		}
	}
	return false
}

// CountAlso counts the attempt against key too when it is committed: the
// uid Nextcloud answered with. The attempt has happened, so key is not
// reserved and cannot refuse it; if key is over its limit already, this
// attempt still counts (its oldest falls out, moving its Retry-After
// later).
func (a *Attempt) CountAlso(key string) {
	if a.done || a.holds(key) || a.na == len(a.also) {
		return
	}
	a.also[a.na] = key
	a.na++
}

// Commit counts the attempt at now against every key it touches.
func (a *Attempt) Commit(now time.Time) { a.finish(true, now) }

// Release gives the attempt back uncounted.
func (a *Attempt) Release() { a.finish(false, time.Time{}) }

func (a *Attempt) finish(commit bool, now time.Time) {
	if a.done {
		return
	}
	a.done = true
	switch {
	case a.redis != nil:
		a.redis.end(a, commit, now)
	case a.local != nil:
		a.local.end(a, commit, now)
	}
}
