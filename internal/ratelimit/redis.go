package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The shared limiter keeps one sorted set per key. Members are "p:<id>"
// while the attempt is in flight and "c:<id>" once counted, as the
// in-process limiter tells the two apart; scores are Unix microseconds,
// exact in a sorted-set score.
//
// Time is Redis's own (TIME inside the script), not each replica's clock:
// replicas whose clocks disagree still share one window. ARGV[1] is empty
// in production; tests that pin the time pass it there (Redis.clock is
// only ever set by tests).
//
// An in-flight member counts only for its lease, the request budget: a
// member whose commit or release never arrived (a replica that died
// mid-request, a reply lost after the timeout) stops counting when no
// request could still be running, instead of blocking the key for the
// whole window.

// scriptNow starts each script: now is ARGV[1] when a test pins the
// clock, else Redis's own TIME in µs, so every replica scores attempts on
// one clock. replicate_commands lets a script that read TIME write.
const scriptNow = `redis.replicate_commands()
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end`

// reserveScript reserves one attempt on every key of KEYS, or on none:
// drop what left the window, and if any key is full answer the longest
// wait among the full keys (Unix µs; one second when every attempt of a
// key is in flight). ARGV: now, window, limit, member, lease. The keys
// expire one window after their last attempt, so Redis memory follows the
// active keys.
var reserveScript = redis.NewScript(scriptNow + `
local window, limit, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local wait = -1
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    local counted, held = {}, 0
    for i = 1, #all, 2 do
      local score = tonumber(all[i + 1])
      if string.sub(all[i], 1, 2) == 'c:' then
        counted[#counted + 1] = {all[i], score}
      elseif score <= now - lease then
        redis.call('ZREM', key, all[i])
      else
        held = held + 1
      end
    end
    -- A reload shrank the limit: keep the newest, as in process.
    local first = math.max(1, #counted - limit + 1)
    for i = 1, first - 1 do
      redis.call('ZREM', key, counted[i][1])
    end
    local n = #counted - first + 1
    if n + held >= limit then
      local w = 1000000
      if n > 0 then
        w = counted[first][2] + window - now
      end
      if w > wait then wait = w end
    end
  end
end
if wait >= 0 then
  return {0, wait}
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, 'p:' .. ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
end
return {1, 0}
`)

// finishScript ends an attempt on every key of KEYS in one call: the
// first n keys drop what left the window and count it at now, the others
// only give back the in-flight member. A key over its limit keeps its
// newest limit counted attempts, as the in-process ring does. ARGV: now,
// window, limit, member, n.
var finishScript = redis.NewScript(scriptNow + `
local window, limit, n = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
for i, key in ipairs(KEYS) do
  redis.call('ZREM', key, 'p:' .. ARGV[4])
  if i <= n then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    redis.call('ZADD', key, now, 'c:' .. ARGV[4])
    if redis.call('ZCARD', key) > limit then
      local all = redis.call('ZRANGE', key, 0, -1)
      local c = 0
      for _, m in ipairs(all) do
        if string.sub(m, 1, 2) == 'c:' then c = c + 1 end
      end
      for _, m in ipairs(all) do
        if c <= limit then break end
        if string.sub(m, 1, 2) == 'c:' then
          redis.call('ZREM', key, m)
          c = c - 1
        end
      end
    end
    redis.call('PEXPIRE', key, math.ceil(window / 1000))
  end
end
return 1
`)

// Redis is a rate limit shared by several Caddy replicas, with the same
// sliding-window answers as the in-process limiter it wraps.
//
// When Redis fails or is slower than its timeout, the check falls back to
// the wrapped Local (fail-local: each replica still limits on its own),
// logs once per incident and calls OnFallback; the next check tries Redis
// again. With on_error deny the check fails instead, and the handler
// answers 503.
type Redis struct {
	local       *Local
	conn        *redisConn
	connKey     string // conn's key in redisConns
	prefix      string // "<key_prefix>:<zone>:", "<key_prefix>:addr:<zone>:"
	timeout     time.Duration
	lease       time.Duration // how long an in-flight attempt counts
	onErrorDeny bool
	logger      *zap.Logger
	onFallback  func()
	// clock pins the scripts' time. Only tests set it; nil means Redis's
	// TIME.
	clock func() time.Time
}

// sharedHold is what an attempt holds on Redis. conn is a reference held
// until the attempt ends, so it reaches Redis even after a reload closed
// the config that reserved.
type sharedHold struct {
	conn   *redisConn
	member string
	// keys are the keys whose sorted sets hold "p:<member>".
	keys [maxAttemptKeys]string
	nk   int
	// stale are keys where a call that failed (a reply after the timeout)
	// may still have added "p:<member>": cleared at the end.
	stale [maxAttemptKeys]string
	ns    int
}

// ErrUnavailable is a shared limiter's failure with on_error deny.
var ErrUnavailable = errors.New("shared rate limiter unavailable")

// errConnClosed is a reserve on a client whose configs all let go of it:
// a request that started after its config was cleaned up.
var errConnClosed = errors.New("redis client closed")

// Reserve implements Limiter: on Redis, or on the wrapped Local when
// Redis does not answer.
func (r *Redis) Reserve(a *Attempt, key string, now time.Time) (time.Duration, error) {
	if a.holds(key) {
		return 0, nil
	}
	a.claim(nil, r)
	var (
		ans []any
		err = errConnClosed
	)
	if sh := r.hold(a); sh != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		ans, err = reserveScript.Run(ctx, sh.conn.client, []string{r.prefix + key},
			r.now(), r.local.lim.window.Microseconds(), r.local.lim.attempts, sh.member, r.lease.Microseconds()).Slice()
		cancel()
		if err == nil && len(ans) != 2 {
			err = fmt.Errorf("unexpected script answer %v", ans)
		}
		if err != nil {
			// The script may still have run (the reply came late): the
			// member is removed at the end of the attempt.
			sh.stale[sh.ns] = key
			sh.ns++
		}
	}
	if err != nil {
		if r.onFallback != nil {
			r.onFallback()
		}
		if r.conn.failing.CompareAndSwap(false, true) {
			r.logger.Warn("shared rate limiter unavailable; limiting in process until it answers",
				zap.Bool("deny", r.onErrorDeny), zap.Error(err))
		}
		if r.onErrorDeny {
			return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return r.local.state.reserve(a, key, now, r.local.lim), nil
	}
	if r.conn.failing.CompareAndSwap(true, false) {
		r.logger.Info("shared rate limiter answers again")
	}
	if allowed, _ := ans[0].(int64); allowed == 1 {
		sh := a.shared
		sh.keys[sh.nk] = key
		sh.nk++
		return 0, nil
	}
	wait, _ := ans[1].(int64)
	return time.Duration(wait) * time.Microsecond, nil
}

// hold makes a hold a reference to r's client until it ends, and returns
// a's part on Redis; nil when the client is closed already.
func (r *Redis) hold(a *Attempt) *sharedHold {
	if a.shared != nil {
		return a.shared
	}
	if !r.conn.ref() {
		return nil
	}
	a.shared = &sharedHold{conn: r.conn, member: randomMember()}
	return a.shared
}

// end ends an attempt r reserved. The in-process windows of keys that fell back
// end as in Local. On Redis, one call ends the attempt on every key:
// committed, it counts on those it reserved on Redis, those it fell back
// on (whose late in-flight member this clears), and those it counts
// without a reservation, so the shared count learns of an attempt a Redis
// hiccup made local; released, every in-flight member goes. When that
// call fails, a committed attempt still counts in this replica
// (fail-local, as for a reserve), and its in-flight members are left to
// their lease.
func (r *Redis) end(a *Attempt, commit bool, now time.Time) {
	sh := a.shared
	if sh == nil {
		r.local.end(a, commit, now) // Redis was never reached
		return
	}
	t, lim := now.UnixNano(), r.local.lim
	if a.nh > 0 {
		r.local.state.finish(a.held[:a.nh], commit, t, lim)
	}
	countAlsoLocally := commit && a.na > 0
	answered := r.finish(a, commit)
	switch {
	case commit && !answered:
		r.local.state.count(sh.keys[:sh.nk], t, lim)
	case sh.nk > 0:
		countAlsoLocally = false // counted on Redis with the others
	}
	sh.conn.unref()
	if countAlsoLocally {
		r.local.state.count(a.also[:a.na], t, lim)
	}
}

// finish ends a on Redis in one call and reports whether Redis answered.
func (r *Redis) finish(a *Attempt, commit bool) bool {
	sh := a.shared
	keys := make([]string, 0, sh.nk+sh.ns+a.na)
	for _, k := range sh.keys[:sh.nk] {
		keys = append(keys, r.prefix+k)
	}
	for _, k := range sh.stale[:sh.ns] {
		keys = append(keys, r.prefix+k)
	}
	n := 0
	if commit {
		for _, k := range a.also[:a.na] {
			keys = append(keys, r.prefix+k)
		}
		n = len(keys)
	}
	if len(keys) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	lim := r.local.lim
	err := finishScript.Run(ctx, sh.conn.client, keys, r.now(), lim.window.Microseconds(), lim.attempts, sh.member, n).Err()
	if err != nil {
		r.logger.Debug("shared rate limiter: ending an attempt failed", zap.Bool("commit", commit), zap.Error(err))
		return false
	}
	return true
}

// Client is the Redis client the limiter works on, for another user of
// the same Redis (the sweep's lease): one connection pool, one set of
// options. It stays open until the limiter is closed.
func (r *Redis) Client() *redis.Client { return r.conn.client }

// Close implements Limiter: it lets go of the client, which is closed
// once no config and no unfinished attempt uses it, and of the wrapped
// Local.
func (r *Redis) Close() error {
	releaseRedisConn(r.connKey)
	return r.local.Close()
}

// now is the scripts' time argument: empty, for Redis's TIME, unless a
// test pinned the clock.
func (r *Redis) now() string {
	if r.clock == nil {
		return ""
	}
	return strconv.FormatInt(r.clock().UnixMicro(), 10)
}

func randomMember() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
