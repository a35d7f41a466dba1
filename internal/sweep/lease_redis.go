package sweep

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// acquireScript takes or extends the lease in one atomic step: a hash
// {holder, expires (Unix ms)}. Another holder's lease is refused while it
// has not expired by the caller's clock; the key's own expiry (by Redis's
// clock) only clears it away once it is over.
var acquireScript = redis.NewScript(`
local holder, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cur = redis.call('HMGET', KEYS[1], 'holder', 'expires')
if cur[1] and cur[1] ~= holder and tonumber(cur[2]) > now then
  return 0
end
redis.call('HSET', KEYS[1], 'holder', holder, 'expires', now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`)

// releaseScript deletes the lease only when holder holds it.
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// RedisLease is the lease for replicas that share a Redis (the shared
// rate limiter's): one hash at Key, e.g. "<key_prefix>:sweep:lease".
type RedisLease struct {
	Client redis.Scripter // a *redis.Client, ClusterClient or Ring
	Key    string
}

// Acquire implements Lease.
func (l *RedisLease) Acquire(ctx context.Context, holder string, now time.Time, ttl time.Duration) (bool, error) {
	ms := ttl.Milliseconds()
	if ms < 1 || holder == "" {
		return false, errors.New("sweep lease: empty holder or ttl under 1ms")
	}
	n, err := acquireScript.Run(ctx, l.Client, []string{l.Key}, holder, now.UnixMilli(), ms).Int()
	return n == 1, err
}

// Release implements Lease.
func (l *RedisLease) Release(ctx context.Context, holder string) error {
	return releaseScript.Run(ctx, l.Client, []string{l.Key}, holder).Err()
}
