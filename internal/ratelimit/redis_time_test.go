package ratelimit

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// The scores are taken by Redis when the script runs (TIME), not by the
// replica when it sends it. The two clocks are made to differ: Redis is
// paused (CLIENT PAUSE, a real Redis's own command) before the replica
// reserves, and again before it commits, so each script runs at least
// `pause` after any time the replica could have read before sending it;
// and the replica's own `now` argument is a year off. Retry-After follows
// the same clock. Failing first: with the scripts' time taken from the
// process clock (time.Now() in Redis.now) or from the `now` argument, the
// reservation is scored before the pause ended.
func TestRedisScoresAreTakenByRedisWhenTheScriptRuns(t *testing.T) {
	srv := redistest.Start(t)
	// A timeout longer than the pause: the reserve waits for Redis
	// instead of falling back to the in-process limiter.
	rl, err := openRedis(&RedisConfig{URL: srv.URL(), Timeout: caddy.Duration(30 * time.Second)}, "zone")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rl.Close() })
	lim := limits{attempts: 1, window: time.Hour, maxUsers: 100}
	c := redisClient(t, srv.Addr)

	const pause = time.Second
	key := "caddy-apppw:zone:alice"
	skewed := time.Now().Add(-365 * 24 * time.Hour) // this replica's clock
	// scoredAfterPause runs step while Redis is paused and checks that
	// the one member of alice's set was scored when Redis ran it.
	scoredAfterPause := func(what string, step func()) time.Time {
		t.Helper()
		before := time.Now()
		if err := c.Do(t.Context(), "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
			t.Fatal(err)
		}
		step()
		members, err := c.ZRangeWithScores(t.Context(), key, 0, -1).Result()
		if err != nil || len(members) != 1 {
			t.Fatalf("%s: members %v (%v)", what, members, err)
		}
		score := time.UnixMicro(int64(members[0].Score))
		if earliest := before.Add(pause); score.Before(earliest) {
			t.Fatalf("%s: scored at %v, before Redis ran the script (not before %v): the replica's time, not Redis's",
				what, score.UTC(), earliest.UTC())
		}
		redisNow, err := c.Time(t.Context()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if score.After(redisNow) {
			t.Fatalf("%s: scored at %v, after Redis's time %v", what, score.UTC(), redisNow.UTC())
		}
		return score
	}
	var r *Attempt
	scoredAfterPause("the reservation", func() {
		var ok bool
		if r, _, ok = sharedReserve(t, rl, "alice", skewed, lim); !ok {
			t.Fatal("the first attempt was refused")
		}
	})
	score := scoredAfterPause("the counted attempt", func() { r.Commit(skewed) })
	redisNow, err := c.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}

	// Retry-After follows the same clock: the window runs from the
	// score, not from the replica's year-old `now`.
	_, wait, ok := sharedReserve(t, rl, "alice", skewed, lim)
	if ok || wait <= 0 || wait > time.Hour-redisNow.Sub(score)+time.Second {
		t.Fatalf("second attempt: ok=%v wait=%v", ok, wait)
	}
}
