package caddyapppw

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

func newTestRedisLimiter(t *testing.T, srv *redistest.Server, deny bool) *redisLimiter {
	t.Helper()
	initMetrics()
	cfg := &RedisConfig{URL: srv.URL()}
	if deny {
		cfg.OnError = "deny"
	}
	rl, err := newRedisLimiter(cfg, caddy.NewReplacer(), "zone", newLimiter(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rl.client.Close() })
	return rl
}

func sharedReserve(t *testing.T, rl *redisLimiter, key string, now time.Time, lim limits) (*reservation, time.Duration, bool) {
	t.Helper()
	r, wait, ok, err := rl.reserve(key, now, lim)
	if err != nil {
		t.Fatal(err)
	}
	return &r, wait, ok
}

// The shared limiter gives the in-process limiter's answers: the same
// window edges, the same Retry-After, the same in-flight bound.
func TestRedisLimiterMatchesInProcess(t *testing.T) {
	srv := redistest.Start(t)
	rl := newTestRedisLimiter(t, srv, false)
	local := newLimiter()
	lim := limits{attempts: 3, window: time.Hour, maxUsers: 100}

	type step struct {
		at      time.Duration
		outcome string // commit, release, hold
	}
	steps := []step{{0, "commit"}, {time.Minute, "commit"}, {2 * time.Minute, "release"}, {3 * time.Minute, "commit"},
		{30 * time.Minute, ""}, {time.Hour - time.Microsecond, ""}, {time.Hour, "commit"}, {time.Hour + time.Minute, "hold"},
		{time.Hour + 2*time.Minute, ""}, {2 * time.Hour, ""}}
	var held []*reservation
	for _, s := range steps {
		now := t0.Add(s.at)
		rr, rwait, rok := sharedReserve(t, rl, "alice", now, lim)
		lr, lwait, lok := local.reserve("alice", now, lim)
		if rok != lok || retryAfterSeconds(rwait) != retryAfterSeconds(lwait) && !(rok && lok) {
			t.Fatalf("at %v: redis (%v, %v) in process (%v, %v)", s.at, rok, rwait, lok, lwait)
		}
		if !rok {
			continue
		}
		switch s.outcome {
		case "commit":
			rr.commit(now)
			lr.commit(now)
		case "hold":
			held = append(held, rr)
		default:
			rr.release()
			lr.release()
		}
	}
	_ = held

	// Every attempt in flight: refused, with no age to wait for.
	for range 3 {
		if _, _, ok := sharedReserve(t, rl, "carol", t0, lim); !ok {
			t.Fatal("carol refused early")
		}
		if _, _, ok := local.reserve("carol", t0, lim); !ok {
			t.Fatal("carol refused early in process")
		}
	}
	_, rwait, rok := sharedReserve(t, rl, "carol", t0, lim)
	_, lwait, lok := local.reserve("carol", t0, lim)
	if rok || lok || retryAfterSeconds(rwait) != 1 || retryAfterSeconds(lwait) != 1 {
		t.Fatalf("all in flight: redis (%v, %v) in process (%v, %v)", rok, rwait, lok, lwait)
	}
}

func TestRedisLimiterKeysExpire(t *testing.T) {
	srv := redistest.Start(t)
	rl := newTestRedisLimiter(t, srv, false)
	lim := limits{attempts: 5, window: 90 * time.Second, maxUsers: 100}
	r, _, _ := sharedReserve(t, rl, "bob", time.Now(), lim)
	r.commit(time.Now())
	ttl, err := rl.client.PTTL(t.Context(), "caddy-apppw:zone:bob").Result()
	if err != nil || ttl <= 0 || ttl > 90*time.Second {
		t.Fatalf("key TTL %v (%v), want within the window", ttl, err)
	}
	keys, _ := rl.client.Keys(t.Context(), "*").Result()
	if len(keys) != 1 || keys[0] != "caddy-apppw:zone:bob" {
		t.Fatalf("keys %v", keys)
	}
}

// Two limiters on one Redis (two replicas) racing for the last attempts
// of a user never grant more than the limit, round after round.
func TestRedisLimiterRaceAtTheBoundary(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestRedisLimiter(t, srv, false), newTestRedisLimiter(t, srv, false)
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
				r, _, ok, err := rl.reserve(user, t0, lim)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					r.commit(t0)
					mu.Lock()
					granted++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if granted != 5 {
			t.Fatalf("round %d: %d attempts granted, limit 5", round, granted)
		}
	}
}

func TestRedisDownFallsBackThenRecovers(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, "rate_limit 3 1h {\n redis "+srv.URL()+"\n }")
	e.nc.AddUser("alice", "", alicePW)
	bad := func() answer { return e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "") }
	bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer client.Close()
	if n, _ := client.ZCard(t.Context(), "caddy-apppw:"+e.nc.URL+":alice").Result(); n != 1 {
		t.Fatalf("%d attempts in Redis, want 1", n)
	}

	before := metricValue(t, e.scrape(), "caddy_app_password_rate_limit_fallbacks_total")
	srv.Kill()
	// Requests go on, limited in process: 3 failures, then 429.
	for range 3 {
		bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	bad().expect(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`)
	if d := metricValue(t, e.scrape(), "caddy_app_password_rate_limit_fallbacks_total") - before; d != 4 {
		t.Fatalf("fallbacks counted %v, want 4", d)
	}
	count := func(msg string) (n int) {
		for _, l := range e.logLines() {
			if l["msg"] == msg {
				n++
			}
		}
		return n
	}
	if n := count("shared rate limiter unavailable; limiting in process until it answers"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once", n)
	}

	srv.Restart(t) // empty: the shared count starts afresh
	e.nc.AddUser("bob", "", alicePW)
	e.call("POST", "/api/v1/users/bob/app-password", "bob:"+alicePW2, "").expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	if n := count("shared rate limiter answers again"); n != 1 {
		t.Fatalf("the recovery was logged %d times, want once", n)
	}
	if n, _ := client.ZCard(t.Context(), "caddy-apppw:"+e.nc.URL+":bob").Result(); n != 1 {
		t.Fatalf("after recovery %d attempts in Redis, want 1", n)
	}
}

func TestRedisDownWithOnErrorDeny(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, "rate_limit {\n redis "+srv.URL()+"\n on_error deny\n }")
	e.nc.AddUser("alice", "", alicePW)
	e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"user_id":"alice","has_app_password":false}`)
	srv.Kill()
	e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 503,
		`{"success":false,"error":"Rate limiter unavailable"}`)
}

func TestRedisCountsSurviveReload(t *testing.T) {
	srv := redistest.Start(t)
	settings := "rate_limit 2 1h {\n redis " + srv.URL() + "\n }"
	e := newEnv(t, settings)
	e.nc.AddUser("alice", "", alicePW)
	bad := func() answer { return e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "") }
	bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	e.reload(e.caddyfile(strings.Replace(settings, "\n }", "\n max_users 500\n }", 1)))
	bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	bad().expect(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`)
}

func BenchmarkLimiterRedisCheck(b *testing.B) {
	srv := redistest.Start(b)
	initMetrics()
	rl, err := newRedisLimiter(&RedisConfig{URL: srv.URL()}, caddy.NewReplacer(), "bench", newLimiter(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer rl.client.Close()
	lim := limits{attempts: 5, window: time.Hour, maxUsers: 100}
	b.ReportAllocs()
	for b.Loop() {
		r, _, ok, err := rl.reserve("alice", t0, lim)
		if err != nil {
			b.Fatal(err)
		}
		if ok {
			r.release()
		}
	}
}
