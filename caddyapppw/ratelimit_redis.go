package caddyapppw

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// reserveScript is the shared limiter's one atomic step: drop the attempts
// that left the window, and either refuse (with the oldest counted
// attempt's time, or -1 when every attempt is still in flight) or add this
// attempt as in flight. Run inside Redis, so two replicas racing for the
// last attempt cannot both get it. Members are "p:<id>" while in flight
// and "c:<id>" once counted, as the in-process limiter tells the two
// apart; times are Unix microseconds, exact in a sorted-set score. The key
// expires one window after its last attempt, so Redis memory follows the
// active users.
var reserveScript = redis.NewScript(`
local key = KEYS[1]
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'c:' then
      return {0, all[i + 1]}
    end
  end
  return {0, '-1'}
end
redis.call('ZADD', key, now, 'p:' .. ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window / 1000))
return {1, '0'}
`)

// commitScript turns an in-flight attempt into one counted at now (as the
// in-process limiter records it) and renews the key's expiry.
var commitScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], 'p:' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[1], 'c:' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000))
return 1
`)

// redisLimiter is the rate limit shared by several Caddy replicas: one
// sorted set per user in Redis, with the same sliding-window answers as
// the in-process limiter. Time comes from the Caddy that asks (replicas'
// clocks should agree, as NTP makes them), which also lets tests inject it.
//
// When Redis fails or is slower than its timeout, the check falls back to
// the zone's in-process limiter (fail-local: each replica still limits on
// its own), logs once per incident and counts it; the next check tries
// Redis again. With onErrorDeny the check fails instead and the request
// is answered 503.
type redisLimiter struct {
	client      *redis.Client
	prefix      string // "<key_prefix>:<zone>:"
	timeout     time.Duration
	onErrorDeny bool
	local       *limiter
	logger      *zap.Logger
	failing     atomic.Bool
}

// errLimiterDown is the shared limiter's failure with on_error deny.
var errLimiterDown = errors.New("shared rate limiter unavailable")

func (rl *redisLimiter) reserve(key string, now time.Time, lim limits) (reservation, time.Duration, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rl.timeout)
	defer cancel()
	member := randomMember()
	nowUS, windowUS := now.UnixMicro(), lim.window.Microseconds()
	res, err := reserveScript.Run(ctx, rl.client, []string{rl.prefix + key}, nowUS, windowUS, lim.attempts, member).Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected script answer %v", res)
	}
	if err != nil {
		metrics.rateLimitFallbacks.Inc()
		if rl.failing.CompareAndSwap(false, true) {
			rl.logger.Warn("shared rate limiter unavailable; limiting in process until it answers",
				zap.Bool("deny", rl.onErrorDeny), zap.Error(err))
		}
		if rl.onErrorDeny {
			return reservation{}, 0, false, fmt.Errorf("%w: %v", errLimiterDown, err)
		}
		r, wait, ok := rl.local.reserve(key, now, lim)
		return r, wait, ok, nil
	}
	if rl.failing.CompareAndSwap(true, false) {
		rl.logger.Info("shared rate limiter answers again")
	}
	if allowed, _ := res[0].(int64); allowed == 1 {
		return reservation{shared: rl, key: rl.prefix + key, member: member, window: lim.window}, 0, true, nil
	}
	oldest, err := strconv.ParseFloat(fmt.Sprint(res[1]), 64)
	if err != nil || oldest < 0 {
		// Every attempt is still in flight: none has an age yet.
		return reservation{}, time.Second, false, nil
	}
	return reservation{}, time.Duration(int64(oldest)+windowUS-nowUS) * time.Microsecond, false, nil
}

// commit counts a reserved attempt at now. A failure leaves the attempt
// counted at its reservation time, which is at most a request earlier.
func (rl *redisLimiter) commit(key, member string, now time.Time, window time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), rl.timeout)
	defer cancel()
	if err := commitScript.Run(ctx, rl.client, []string{key}, now.UnixMicro(), window.Microseconds(), member).Err(); err != nil {
		rl.logger.Debug("shared rate limiter: commit failed", zap.Error(err))
	}
}

// release gives a reserved attempt back. A failure leaves it counted
// until it leaves the window: the limit errs on the safe side.
func (rl *redisLimiter) release(key, member string) {
	ctx, cancel := context.WithTimeout(context.Background(), rl.timeout)
	defer cancel()
	if err := rl.client.ZRem(ctx, key, "p:"+member).Err(); err != nil {
		rl.logger.Debug("shared rate limiter: release failed", zap.Error(err))
	}
}

func randomMember() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
