package caddyapppw

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// sentinelSettings is a rate_limit block whose Redis is found through
// the sentinels of s.
func sentinelSettings(s *redistest.Sentinel, attempts string, more string) string {
	return "rate_limit " + attempts + " 1h {\n redis {\n sentinel " + redistest.MasterName + " " +
		strings.Join(s.Addrs(), " ") + "\n timeout 250ms\n }\n" + more + " }"
}

// The primary is killed (SIGKILL) and Sentinel promotes the replica: checks
// in between fall back as on_error says, and afterwards the limit is on
// the promoted replica, with the attempts counted before, without a
// reload.
func TestRedisSentinelFailover(t *testing.T) {
	verifyNoLeaks(t) // the failover client's goroutines end with its config
	s := redistest.StartSentinel(t)
	e := newEnv(t, sentinelSettings(s, "3", ""))
	e.nc.AddUser("alice", "", alicePW)
	bad := func() answer { return e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "") }
	key := "caddy-apppw:" + e.nc.URL + ":alice"
	counted := func(addr string) int64 {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		n, err := c.ZCard(t.Context(), key).Result()
		if err != nil {
			t.Fatalf("ZCARD on %s: %v", addr, err)
		}
		return n
	}
	bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	if n := counted(s.Primary.Addr); n != 2 {
		t.Fatalf("%d attempts on the primary, want 2", n)
	}
	// The replica has them too before the primary dies (asynchronous
	// replication: what was not yet copied is lost in a failover).
	deadline := time.Now().Add(10 * time.Second)
	for counted(s.Replica.Addr) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the replica never caught up")
		}
		time.Sleep(20 * time.Millisecond)
	}

	old := s.Primary.Addr
	s.Primary.Kill()
	// Until Sentinel has promoted the replica, checks fall back to the
	// in-process limit (on_error local): a wrong password is still a 401.
	bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	promoted, err := s.WaitFailover(old, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if promoted != s.Replica.Addr {
		t.Fatalf("promoted %s, want the replica %s", promoted, s.Replica.Addr)
	}

	// No reload: the failover client asks the sentinels again. The third
	// attempt on the shared limit is counted on the new primary, the
	// fourth is refused.
	deadline = time.Now().Add(30 * time.Second)
	var a answer
	for {
		a = bad()
		if n := counted(promoted); n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new primary never counted: last answer %d %s", a.status, a.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a = bad()
	if !rateLimitedAbout(a, time.Hour) {
		t.Fatalf("after the failover: %d %s, want 429", a.status, a.body)
	}
	found := false
	for _, l := range e.logLines() {
		if l["msg"] == "shared rate limiter answers again" {
			found = true
		}
	}
	if !found {
		t.Fatal("no log line for the shared limiter answering again")
	}
}

// With on_error deny a check during the failover is a 503 the client may
// retry (Retry-After), never a 500 or a 401.
func TestRedisSentinelFailoverDeny(t *testing.T) {
	s := redistest.StartSentinel(t)
	e := newEnv(t, sentinelSettings(s, "5", " on_error deny\n"))
	e.nc.AddUser("alice", "", alicePW)
	get := func() answer { return e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "") }
	ok := `{"success":true,"user_id":"alice","has_app_password":false}`
	get().expect(t, 200, ok)
	old := s.Primary.Addr
	s.Primary.Kill()
	a := get()
	a.expect(t, 503, `{"success":false,"error":"Rate limiter unavailable"}`)
	if ra := a.header.Get("Retry-After"); ra != unavailableRetryAfter {
		t.Fatalf("Retry-After %q, want %q", ra, unavailableRetryAfter)
	}
	if _, err := s.WaitFailover(old, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for a = get(); a.status != 200; a = get() {
		if a.status != 503 || time.Now().After(deadline) {
			t.Fatalf("after the failover: %d %s", a.status, a.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.expect(t, 200, ok)
}
