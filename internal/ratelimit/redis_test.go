package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// pinnedClock is the time a test gives the shared limiter's scripts.
type pinnedClock struct{ us atomic.Int64 }

func (c *pinnedClock) set(t time.Time) { c.us.Store(t.UnixMicro()) }

func (c *pinnedClock) now() time.Time { return time.UnixMicro(c.us.Load()) }

const testLease = 30 * time.Second

// openRedis is a shared limiter as a config opens it, under keyspace,
// wrapping an in-process state of its own.
func openRedis(cfg *RedisConfig, keyspace string) (*Redis, error) {
	(&Config{Redis: cfg}).SetDefaults()
	return newRedis(cfg, keyspace, &Local{state: newZoneState()},
		Options{Lease: testLease, Replacer: caddy.NewReplacer(), Logger: zap.NewNop()})
}

// newTestRedisLimiter is a shared limiter on url in zone "zone". With a
// clock its scripts use that time, else Redis's.
func newTestRedisLimiter(t testing.TB, url string, deny bool, clock *pinnedClock) *Redis {
	t.Helper()
	cfg := &RedisConfig{URL: url}
	if deny {
		cfg.OnError = "deny"
	}
	rl, err := openRedis(cfg, "zone")
	if err != nil {
		t.Fatal(err)
	}
	if clock != nil {
		rl.clock = clock.now
	}
	t.Cleanup(func() { _ = rl.Close() })
	return rl
}

// under is rl as a config with the limits lim sees it: the same client,
// keys and in-process state.
func under(rl *Redis, lim limits) *Redis {
	v := *rl
	v.local = &Local{state: rl.local.state, lim: lim}
	return &v
}

// sharedReserve reserves key alone under lim, at clock's time when one is
// set.
func sharedReserve(t *testing.T, rl *Redis, key string, now time.Time, lim limits) (*Attempt, time.Duration, bool) {
	t.Helper()
	r := new(Attempt)
	wait, err := under(rl, lim).Reserve(r, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if wait > 0 {
		r.Release()
	}
	return r, wait, wait == 0
}

func redisClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// The shared limiter gives the in-process limiter's answers: the same
// window edges, the same Retry-After, the same in-flight bound.
func TestRedisLimiterMatchesInProcess(t *testing.T) {
	srv := redistest.Start(t)
	clock := new(pinnedClock)
	rl := newTestRedisLimiter(t, srv.URL(), false, clock)
	rl.lease = 3 * time.Hour // in process, an attempt is in flight until it ends
	local := newZoneState()
	lim := limits{attempts: 3, window: time.Hour, maxUsers: 100}

	type step struct {
		at      time.Duration
		outcome string // commit, release, hold
	}
	steps := []step{{0, "commit"}, {time.Minute, "commit"}, {2 * time.Minute, "release"}, {3 * time.Minute, "commit"},
		{30 * time.Minute, ""}, {time.Hour - time.Microsecond, ""}, {time.Hour, "commit"}, {time.Hour + time.Minute, "hold"},
		{time.Hour + 2*time.Minute, ""}, {2 * time.Hour, ""}}
	for _, s := range steps {
		now := t0.Add(s.at)
		clock.set(now)
		rr, rwait, rok := sharedReserve(t, rl, "alice", now, lim)
		lr, lwait, lok := reserve(local, "alice", now, lim)
		if rok != lok || rwait != lwait {
			t.Fatalf("at %v: redis (%v, %v) in process (%v, %v)", s.at, rok, rwait, lok, lwait)
		}
		if !rok {
			continue
		}
		switch s.outcome {
		case "commit":
			rr.Commit(now)
			lr.Commit(now)
		case "hold":
		default:
			rr.Release()
			lr.Release()
		}
	}

	// Every attempt in flight: refused, with no age to wait for.
	clock.set(t0)
	for range 3 {
		if _, _, ok := sharedReserve(t, rl, "carol", t0, lim); !ok {
			t.Fatal("carol refused early")
		}
		if _, _, ok := reserve(local, "carol", t0, lim); !ok {
			t.Fatal("carol refused early in process")
		}
	}
	_, rwait, rok := sharedReserve(t, rl, "carol", t0, lim)
	_, lwait, lok := reserve(local, "carol", t0, lim)
	if rok || lok || rwait != time.Second || lwait != time.Second {
		t.Fatalf("all in flight: redis (%v, %v) in process (%v, %v)", rok, rwait, lok, lwait)
	}
}

// Attempts over several keys, counted against the uid Nextcloud named,
// under limits a reload changes: Redis and the in-process limiter give the
// same answers, operation after operation.
func TestRedisMultiKeyAttemptsMatchInProcess(t *testing.T) {
	srv := redistest.Start(t)
	clock := new(pinnedClock)
	rl := newTestRedisLimiter(t, srv.URL(), false, clock)
	rl.lease = 24 * time.Hour
	local := newZoneState()
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"a", "b", "c", "d"}
	type pair struct{ r, l *Attempt }
	var held []pair
	now := t0
	for step := range 1500 {
		// Windows of minutes: Redis expires idle keys in its own time.
		lim := limits{attempts: 2 + rng.IntN(3), window: time.Duration(20+rng.IntN(40)) * time.Minute, maxUsers: 100}
		shared, inProc := under(rl, lim), &Local{state: local, lim: lim}
		now = now.Add(time.Duration(rng.IntN(180)) * time.Second)
		clock.set(now)
		var r, l Attempt
		ok := true
		for range 1 + rng.IntN(2) {
			k := names[rng.IntN(len(names))]
			rwait, err := shared.Reserve(&r, k, now)
			if err != nil {
				t.Fatal(err)
			}
			lwait, _ := inProc.Reserve(&l, k, now)
			rok, lok := rwait == 0, lwait == 0
			if rok != lok || rwait != lwait {
				t.Fatalf("step %d key %s: redis (%v, %v) in process (%v, %v)", step, k, rok, rwait, lok, lwait)
			}
			if !rok {
				ok = false
				break
			}
		}
		if !ok {
			r.Release()
			l.Release()
		} else {
			held = append(held, pair{&r, &l})
		}
		if len(held) > 0 && rng.IntN(3) > 0 {
			i := rng.IntN(len(held))
			p := held[i]
			held = append(held[:i], held[i+1:]...)
			if rng.IntN(3) == 0 {
				p.r.Release()
				p.l.Release()
				continue
			}
			if rng.IntN(2) == 0 {
				uid := names[rng.IntN(len(names))]
				p.r.CountAlso(uid)
				p.l.CountAlso(uid)
			}
			p.r.Commit(now)
			p.l.Commit(now)
		}
	}
}

func TestRedisLimiterKeysExpire(t *testing.T) {
	srv := redistest.Start(t)
	rl := newTestRedisLimiter(t, srv.URL(), false, nil)
	lim := limits{attempts: 5, window: 90 * time.Second, maxUsers: 100}
	r, _, _ := sharedReserve(t, rl, "bob", time.Now(), lim)
	r.Commit(time.Now())
	c := redisClient(t, srv.Addr)
	ttl, err := c.PTTL(t.Context(), "caddy-apppw:zone:bob").Result()
	if err != nil || ttl <= 0 || ttl > 90*time.Second {
		t.Fatalf("key TTL %v (%v), want within the window", ttl, err)
	}
	keys, _ := c.Keys(t.Context(), "*").Result()
	if len(keys) != 1 || keys[0] != "caddy-apppw:zone:bob" {
		t.Fatalf("keys %v", keys)
	}
}

// The scores are Redis's time, not the replica's: a replica whose clock
// is a year off still counts in the one window all replicas share.
func TestRedisScoresAreRedisTime(t *testing.T) {
	srv := redistest.Start(t)
	rl := newTestRedisLimiter(t, srv.URL(), false, nil)
	lim := limits{attempts: 5, window: time.Hour, maxUsers: 100}
	skewed := time.Now().Add(365 * 24 * time.Hour) // this replica's clock
	r, _, _ := sharedReserve(t, rl, "alice", skewed, lim)
	r.Commit(skewed)
	c := redisClient(t, srv.Addr)
	redisNow, err := c.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	members, err := c.ZRangeWithScores(t.Context(), "caddy-apppw:zone:alice", 0, -1).Result()
	if err != nil || len(members) != 1 {
		t.Fatalf("members %v (%v)", members, err)
	}
	score := time.UnixMicro(int64(members[0].Score))
	if d := redisNow.Sub(score); d < 0 || d > time.Minute {
		t.Fatalf("attempt scored at %v, Redis's time is %v", score, redisNow)
	}
}

// Two limiters on one Redis (two replicas) racing for the last attempts
// of a user never grant more than the limit, round after round.
func TestRedisLimiterRaceAtTheBoundary(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestRedisLimiter(t, srv.URL(), false, nil), newTestRedisLimiter(t, srv.URL(), false, nil)
	lim := limits{attempts: 5, window: time.Hour, maxUsers: 100}
	for round := range 30 {
		user := fmt.Sprint("race", round)
		var mu sync.Mutex
		granted := 0
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				rl := a
				if i%2 == 1 {
					rl = b
				}
				var r Attempt
				wait, err := under(rl, lim).Reserve(&r, user, t0)
				if err != nil {
					t.Error(err)
					return
				}
				if wait == 0 {
					r.Commit(t0)
					mu.Lock()
					granted++
					mu.Unlock()
				} else {
					r.Release()
				}
			})
		}
		wg.Wait()
		if granted != 5 {
			t.Fatalf("round %d: %d attempts granted, limit 5", round, granted)
		}
	}
}

// An attempt over three keys is reserved on the first two before
// Nextcloud is asked and ended on all three, the uid counted with them,
// in one script call: another replica then sees each key counted.
func TestRedisAttemptEndsInOneCall(t *testing.T) {
	srv := redistest.Start(t)
	clock := new(pinnedClock)
	clock.set(t0)
	a, b := newTestRedisLimiter(t, srv.URL(), false, clock), newTestRedisLimiter(t, srv.URL(), false, clock)
	lim := limits{attempts: 1, window: time.Hour, maxUsers: 100}
	z := under(a, lim)
	c := redisClient(t, srv.Addr)
	evalsha := func() int {
		stats, err := c.Info(t.Context(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(stats, "\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	if err := finishScript.Load(t.Context(), c).Err(); err != nil {
		t.Fatal(err)
	}
	var r Attempt
	for _, k := range []string{"x0001", "victim@example.com"} {
		if wait, err := z.Reserve(&r, k, t0); wait != 0 || err != nil {
			t.Fatalf("%s: wait=%v err=%v", k, wait, err)
		}
	}
	r.CountAlso("victim")
	before := evalsha()
	r.Commit(t0)
	if n := evalsha() - before; n != 1 {
		t.Fatalf("the commit took %d script calls, want 1", n)
	}
	clock.set(t0.Add(time.Minute))
	for _, k := range []string{"x0001", "victim@example.com", "victim"} {
		if _, wait, ok := sharedReserve(t, b, k, t0, lim); ok || wait != 59*time.Minute {
			t.Fatalf("%s on the other replica: ok=%v wait=%v", k, ok, wait)
		}
	}
}

// An in-flight attempt whose end never comes (the replica died) counts
// for the lease only, not for the whole window.
func TestRedisInflightAttemptsHaveALease(t *testing.T) {
	srv := redistest.Start(t)
	clock := new(pinnedClock)
	rl := newTestRedisLimiter(t, srv.URL(), false, clock)
	lim := limits{attempts: 5, window: time.Hour, maxUsers: 100}
	clock.set(t0)
	for range 5 {
		if _, _, ok := sharedReserve(t, rl, "alice", t0, lim); !ok {
			t.Fatal("refused early")
		}
		// ... and the replica dies before commit or release (its
		// reference to the client is never given back either).
	}
	clock.set(t0.Add(testLease - time.Microsecond))
	if _, wait, ok := sharedReserve(t, rl, "alice", t0, lim); ok || wait != time.Second {
		t.Fatalf("within the lease: ok=%v wait=%v", ok, wait)
	}
	clock.set(t0.Add(testLease))
	r, _, ok := sharedReserve(t, rl, "alice", t0, lim)
	if !ok {
		t.Fatal("five abandoned attempts still block the user after their lease")
	}
	r.Release()
	// A counted attempt has no lease: it counts for the window.
	r, _, _ = sharedReserve(t, rl, "bob", t0, limits{attempts: 1, window: time.Hour})
	r.Commit(t0)
	clock.set(t0.Add(2 * testLease))
	if _, _, ok := sharedReserve(t, rl, "bob", t0, limits{attempts: 1, window: time.Hour}); ok {
		t.Fatal("a counted attempt expired with the lease")
	}
}

// A reserve whose reply comes after the timeout falls back, but the
// script ran in Redis. When the attempt ends, its late in-flight member
// goes: released, nothing is left to block the user for the window;
// committed, the attempt counts on Redis too, so the shared count learns
// of it.
func TestRedisLateReplyIsCleared(t *testing.T) {
	for _, commit := range []bool{false, true} {
		t.Run(fmt.Sprint("commit=", commit), func(t *testing.T) {
			srv := redistest.Start(t)
			proxy := srv.Proxy(t)
			rl := newTestRedisLimiter(t, proxy.URL(), false, nil)
			other := newTestRedisLimiter(t, srv.URL(), false, nil) // another replica
			lim := limits{attempts: 1, window: time.Hour, maxUsers: 100}
			c := redisClient(t, srv.Addr)
			// Loaded, so that the held call is the script itself, not an
			// EVALSHA that Redis answers NOSCRIPT.
			if err := reserveScript.Load(t.Context(), c).Err(); err != nil {
				t.Fatal(err)
			}
			// Connected already, so that what is held is the script's
			// reply, not the connection's handshake.
			if err := rl.conn.client.Ping(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}

			proxy.Hold(true)
			r, _, ok := sharedReserve(t, rl, "alice", time.Now(), lim)
			if !ok || r.nh != 1 || r.shared.nk != 0 {
				t.Fatalf("a reply after the timeout: ok=%v, %d local, %d shared keys (want a local fallback)", ok, r.nh, r.shared.nk)
			}
			// The script ran all the same: its member is in Redis.
			deadline := time.Now().Add(10 * time.Second)
			for n, _ := c.ZCard(t.Context(), "caddy-apppw:zone:alice").Result(); n != 1; n, _ = c.ZCard(t.Context(), "caddy-apppw:zone:alice").Result() {
				if time.Now().After(deadline) {
					t.Fatal("the held reserve never reached Redis")
				}
				time.Sleep(10 * time.Millisecond) // polling Redis, an external process
			}
			proxy.Hold(false)
			if !commit {
				r.Release()
				if n, _ := c.ZCard(t.Context(), "caddy-apppw:zone:alice").Result(); n != 0 {
					t.Fatalf("%d members left after the attempt ended", n)
				}
				if _, wait, ok := sharedReserve(t, other, "alice", time.Now(), lim); !ok {
					t.Fatalf("the other replica is refused (wait %v)", wait)
				}
				return
			}
			r.Commit(time.Now())
			members, _ := c.ZRange(t.Context(), "caddy-apppw:zone:alice", 0, -1).Result()
			if len(members) != 1 || !strings.HasPrefix(members[0], "c:") {
				t.Fatalf("after the commit Redis holds %v, want one counted attempt", members)
			}
			if _, wait, ok := sharedReserve(t, other, "alice", time.Now(), lim); ok || wait < time.Hour-time.Minute {
				t.Fatalf("the other replica: ok=%v wait=%v", ok, wait)
			}
			// And the replica that fell back counted it too.
			if _, _, ok := reserve(rl.local.state, "alice", time.Now(), lim); ok {
				t.Fatal("the fallen-back attempt was not counted in process")
			}
		})
	}
}

// An attempt that ends after its config's Cleanup still reaches Redis:
// the client lives until the last attempt on it ends.
func TestRedisAttemptOutlivesItsConfig(t *testing.T) {
	srv := redistest.Start(t)
	cfg := &RedisConfig{URL: srv.URL()}
	rl, err := openRedis(cfg, "outlive")
	if err != nil {
		t.Fatal(err)
	}
	lim := limits{attempts: 5, window: time.Hour, maxUsers: 100}
	committed, _, _ := sharedReserve(t, rl, "alice", time.Now(), lim)
	released, _, _ := sharedReserve(t, rl, "bob", time.Now(), lim)
	_ = rl.Close() // the config's Cleanup, while both requests still run
	committed.Commit(time.Now())
	released.Release()

	c := redisClient(t, srv.Addr)
	members, _ := c.ZRange(t.Context(), "caddy-apppw:outlive:alice", 0, -1).Result()
	if len(members) != 1 || !strings.HasPrefix(members[0], "c:") {
		t.Fatalf("alice's attempt after Cleanup: %v, want one counted", members)
	}
	if n, _ := c.ZCard(t.Context(), "caddy-apppw:outlive:bob").Result(); n != 0 {
		t.Fatalf("bob's released attempt left %d members", n)
	}
	// The last attempt closed the client.
	if err := rl.conn.client.Ping(t.Context()).Err(); err != redis.ErrClosed {
		t.Fatalf("client after the last reference: %v", err)
	}
	// A new config gets a new client.
	rl2, err := openRedis(cfg, "outlive")
	if err != nil {
		t.Fatal(err)
	}
	defer rl2.Close()
	if err := rl2.conn.client.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

// Two configs with the same Redis options share one client, so a reload
// keeps the connections.
func TestRedisClientIsSharedAcrossConfigs(t *testing.T) {
	cfg := &RedisConfig{URL: "redis://127.0.0.1:1/0"}
	a, err := openRedis(cfg, "z")
	if err != nil {
		t.Fatal(err)
	}
	b, err := openRedis(cfg, "addr:z")
	if err != nil {
		t.Fatal(err)
	}
	if a.conn != b.conn {
		t.Fatal("two limiters on one Redis got two clients")
	}
	_ = a.Close()
	if err := b.conn.client.Ping(t.Context()).Err(); err == redis.ErrClosed {
		t.Fatal("closing one config closed the other's client")
	}
	_ = b.Close()
	if err := b.conn.client.Ping(t.Context()).Err(); err != redis.ErrClosed {
		t.Fatalf("client after both let go: %v", err)
	}
}

// A Redis URL that does not parse is reported without its user info.
func TestRedisURLErrorHidesThePassword(t *testing.T) {
	for _, u := range []string{
		"redis://user:s3cr%zzet@host:6379/0", // bad escape
		"redis://user:s3cr/et@host:6379/0",   // a slash cuts the authority: "invalid port"
		"redis://:s3cr et@host/0",            // a space
		"redis://user:s3cret@host:6379/x",    // go-redis's own error
		"user:s3cret@host:6379",              // no scheme
	} {
		_, err := openRedis(&RedisConfig{URL: u}, "z")
		if err == nil {
			t.Fatalf("%s: no error", u)
		}
		if strings.Contains(err.Error(), "s3cr") || !strings.HasPrefix(err.Error(), "url: ") {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func BenchmarkLimiterRedisCheck(b *testing.B) {
	srv := redistest.Start(b)
	rl := newTestRedisLimiter(b, srv.URL(), false, nil)
	lim := limits{attempts: 5, window: time.Hour, maxUsers: 100}
	v := under(rl, lim)
	b.ReportAllocs()
	for b.Loop() {
		var r Attempt
		if _, err := v.Reserve(&r, "alice", t0); err != nil {
			b.Fatal(err)
		}
		r.Release()
	}
}
