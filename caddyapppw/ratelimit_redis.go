package caddyapppw

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
// in production; tests that pin the time pass it there (redisLimiter.clock
// is only ever set by tests).
//
// An in-flight member counts only for its lease, the request budget: a
// member whose commit or release never arrived (a replica that died
// mid-request, a reply lost after the timeout) stops counting when no
// request could still be running, instead of blocking the key for the
// whole window.

// reserveScript reserves one attempt on every key of KEYS, or on none:
// drop what left the window, and if any key is full answer the longest
// wait among the full keys (Unix µs; one second when every attempt of a
// key is in flight). ARGV: now, window, limit, member, lease. The keys
// expire one window after their last attempt, so Redis memory follows the
// active keys.
var reserveScript = redis.NewScript(`
redis.replicate_commands()
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
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
var finishScript = redis.NewScript(`
redis.replicate_commands()
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
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

// redisLimiter is a rate limit shared by several Caddy replicas, with the
// same sliding-window answers as the in-process limiter.
//
// When Redis fails or is slower than its timeout, the check falls back to
// the zone's in-process limiter (fail-local: each replica still limits on
// its own), logs once per incident and counts it; the next check tries
// Redis again. With onErrorDeny the check fails instead and the request
// is answered 503.
type redisLimiter struct {
	conn        *redisConn
	connKey     string // conn's key in redisConns
	prefix      string // "<key_prefix>:<zone>:", "<key_prefix>:addr:<zone>:"
	timeout     time.Duration
	lease       time.Duration // how long an in-flight attempt counts
	onErrorDeny bool
	local       *limiter
	logger      *zap.Logger
	// clock pins the scripts' time. Only tests set it; nil means Redis's
	// TIME.
	clock func() time.Time
}

// errLimiterDown is the shared limiter's failure with on_error deny.
var errLimiterDown = errors.New("shared rate limiter unavailable")

// errConnClosed is a reserve on a client whose configs all let go of it:
// a request that started after its config was cleaned up.
var errConnClosed = errors.New("redis client closed")

// reserveInto adds key to res on Redis, or falls back.
func (rl *redisLimiter) reserveInto(res *reservation, key string, now time.Time, lim limits) (time.Duration, bool, error) {
	var (
		ans []any
		err = errConnClosed
	)
	if res.hold(rl) {
		if res.member == "" {
			res.member = randomMember()
		}
		ctx, cancel := context.WithTimeout(context.Background(), rl.timeout)
		ans, err = reserveScript.Run(ctx, rl.conn.client, []string{rl.prefix + key},
			rl.now(), lim.window.Microseconds(), lim.attempts, res.member, rl.lease.Microseconds()).Slice()
		cancel()
		if err == nil && len(ans) != 2 {
			err = fmt.Errorf("unexpected script answer %v", ans)
		}
		if err != nil {
			// The script may still have run (the reply came late): the
			// member is removed at the end of the attempt.
			res.addStale(key)
		}
	}
	if err != nil {
		metrics.rateLimitFallbacks.Inc()
		if rl.conn.failing.CompareAndSwap(false, true) {
			rl.logger.Warn("shared rate limiter unavailable; limiting in process until it answers",
				zap.Bool("deny", rl.onErrorDeny), zap.Error(err))
		}
		if rl.onErrorDeny {
			return 0, false, fmt.Errorf("%w: %v", errLimiterDown, err)
		}
		wait, ok := rl.local.reserveInto(res, key, now, lim)
		return wait, ok, nil
	}
	if rl.conn.failing.CompareAndSwap(true, false) {
		rl.logger.Info("shared rate limiter answers again")
	}
	if allowed, _ := ans[0].(int64); allowed == 1 {
		res.addShared(key)
		return 0, true, nil
	}
	wait, _ := ans[1].(int64)
	return time.Duration(wait) * time.Microsecond, false, nil
}

// hold makes res hold a reference to rl's client until it finishes.
func (r *reservation) hold(rl *redisLimiter) bool {
	if r.conn != nil {
		return true
	}
	if !rl.conn.ref() {
		return false
	}
	r.shared, r.conn = rl, rl.conn
	return true
}

// finish ends res on Redis in one call. Committed, the attempt counts on
// every key: those it reserved on Redis, those it fell back on (whose
// late in-flight member this clears), and those it counts without a
// reservation; the shared count so learns of an attempt a Redis hiccup
// made local. Released, every in-flight member goes. It reports whether
// Redis answered; a failure leaves the in-flight members to their lease.
func (rl *redisLimiter) finish(res *reservation, commit bool) bool {
	keys := make([]string, 0, res.nk+res.ns+res.na)
	for _, k := range res.keys[:res.nk] {
		keys = append(keys, rl.prefix+k)
	}
	for _, k := range res.stale[:res.ns] {
		keys = append(keys, rl.prefix+k)
	}
	n := 0
	if commit {
		for _, k := range res.also[:res.na] {
			keys = append(keys, rl.prefix+k)
		}
		n = len(keys)
	}
	if len(keys) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), rl.timeout)
	defer cancel()
	err := finishScript.Run(ctx, rl.conn.client, keys, rl.now(), res.lim.window.Microseconds(), res.lim.attempts, res.member, n).Err()
	if err != nil {
		rl.logger.Debug("shared rate limiter: ending an attempt failed", zap.Bool("commit", commit), zap.Error(err))
		return false
	}
	return true
}

// now is the scripts' time argument: empty, for Redis's TIME, unless a
// test pinned the clock.
func (rl *redisLimiter) now() string {
	if rl.clock == nil {
		return ""
	}
	return strconv.FormatInt(rl.clock().UnixMicro(), 10)
}

func randomMember() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
