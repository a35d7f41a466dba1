package caddyapppw

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// The shared limit through Caddy: outages, on_error deny, reloads. The
// limiter's own behaviour is tested in internal/ratelimit.

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
	a := bad()
	if a.status != 429 || !rateLimitedAbout(a, time.Hour) {
		t.Fatalf("third attempt: %d %s", a.status, a.body)
	}
}

// rateLimitedAbout reports whether a is the 429 of API.md with a
// Retry-After within a few seconds of d: on Redis the time is Redis's own,
// so a test cannot pin it to the second.
func rateLimitedAbout(a answer, d time.Duration) bool {
	n, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || a.status != 429 {
		return false
	}
	return a.body == `{"success":false,"error":"Rate limit exceeded. Try again in `+strconv.Itoa(n)+` seconds."}` &&
		time.Duration(n)*time.Second <= d && time.Duration(n)*time.Second > d-10*time.Second
}
