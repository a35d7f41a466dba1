package ratelimit

import (
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	c := Config{PerAddress: &PerAddressConfig{Failures: 3}, Redis: &RedisConfig{URL: "redis://r"}}
	c.SetDefaults()
	if c.Attempts != DefaultAttempts || time.Duration(c.Window) != DefaultWindow || c.MaxUsers != DefaultMaxUsers ||
		time.Duration(c.PerAddress.Window) != DefaultWindow ||
		time.Duration(c.Redis.Timeout) != DefaultRedisTimeout || c.Redis.KeyPrefix != DefaultKeyPrefix {
		t.Fatalf("defaults: %+v %+v %+v", c, c.PerAddress, c.Redis)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Attempts: -1}, "attempts must be positive, not -1"},
		{Config{Window: caddy.Duration(-time.Hour)}, "window must be positive, not -1h0m0s"},
		{Config{MaxUsers: -5}, "max_users must be positive, not -5"},
		{Config{PerAddress: &PerAddressConfig{}}, "per_address: failures must be positive, not 0"},
		{Config{PerAddress: &PerAddressConfig{Failures: 1, Window: -1}}, "per_address: window must be positive, not -1ns"},
		{Config{Redis: &RedisConfig{URL: "redis://r", OnError: "maybe"}}, `redis: on_error: "maybe" is neither local nor deny`},
		{Config{Redis: &RedisConfig{URL: "redis://r", Timeout: -1}}, "redis: timeout must be positive"},
		{Config{Redis: &RedisConfig{Sentinel: &SentinelConfig{Addresses: []string{"s:26379"}}}}, "redis: sentinel: the master name is required"},
		{Config{Redis: &RedisConfig{Sentinel: &SentinelConfig{MasterName: "m"}}}, "redis: sentinel: at least one sentinel address is required"},
	} {
		tc.c.SetDefaults()
		if err := tc.c.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: error %v, want %q", tc.c, err, tc.want)
		}
	}
}

// Open gives a config its limiters: the per-address one only when asked
// for, each on Redis when Redis is configured, and nothing left behind
// when one of them cannot be opened.
func TestOpen(t *testing.T) {
	c := Config{}
	c.SetDefaults()
	acc, addr, err := c.Open(Options{Zone: "open-test"})
	if err != nil || addr != nil {
		t.Fatalf("no per_address: %v, %v", addr, err)
	}
	if _, ok := acc.(*Local); !ok {
		t.Fatalf("without redis: %T", acc)
	}
	_ = acc.Close()

	c = Config{PerAddress: &PerAddressConfig{Failures: 2}, Redis: &RedisConfig{URL: "redis://127.0.0.1:1/0"}}
	c.SetDefaults()
	acc, addr, err = c.Open(Options{Zone: "open-test", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ra, ok1 := acc.(*Redis)
	rb, ok2 := addr.(*Redis)
	if !ok1 || !ok2 || ra.prefix != "caddy-apppw:open-test:" || rb.prefix != "caddy-apppw:addr:open-test:" ||
		ra.local.key != (zoneKey{Accounts, "open-test"}) || rb.local.key != (zoneKey{Addresses, "open-test"}) ||
		rb.local.lim != (limits{attempts: 2, window: time.Hour, maxUsers: DefaultMaxUsers}) || ra.conn != rb.conn {
		t.Fatalf("with redis and per_address: %+v %+v", acc, addr)
	}
	_ = acc.Close()
	_ = addr.Close()

	c = Config{PerAddress: &PerAddressConfig{Failures: 2}, Redis: &RedisConfig{URL: "redis://r", CACert: "/x.pem"}}
	c.SetDefaults()
	if _, _, err := c.Open(Options{Zone: "open-test"}); err == nil || err.Error() != "redis: ca_cert needs a rediss:// url" {
		t.Fatalf("bad redis: %v", err)
	}
	tracked := 0
	EachZone(func(_ Kind, zone string, _ int) {
		if zone == "open-test" {
			tracked++
		}
	})
	if tracked != 0 {
		t.Fatalf("%d states of the zone left after every limiter closed or failed", tracked)
	}
}

// When Redis does not answer, the shared limiter says so through
// OnFallback, and with on_error deny refuses with ErrUnavailable instead
// of deciding in process.
func TestRedisFallbackHook(t *testing.T) {
	for _, deny := range []bool{false, true} {
		fallbacks := 0
		c := Config{Attempts: 1, Redis: &RedisConfig{URL: "redis://127.0.0.1:1/0"}}
		if deny {
			c.Redis.OnError = "deny"
		}
		c.SetDefaults()
		acc, _, err := c.Open(Options{Zone: "fallback-test", OnFallback: func() { fallbacks++ }})
		if err != nil {
			t.Fatal(err)
		}
		var a Attempt
		wait, err := acc.Reserve(&a, "alice", t0)
		switch {
		case deny && (!errors.Is(err, ErrUnavailable) || wait != 0):
			t.Fatalf("deny: wait=%v err=%v", wait, err)
		case !deny && (err != nil || wait != 0 || a.nh != 1):
			t.Fatalf("local: wait=%v err=%v, %d held in process", wait, err, a.nh)
		}
		a.Commit(t0)
		if fallbacks != 1 {
			t.Fatalf("deny=%v: %d fallbacks reported, want 1", deny, fallbacks)
		}
		if !deny {
			// Counted in process: the next attempt is refused there.
			var b Attempt
			if wait, _ := acc.Reserve(&b, "alice", t0); wait != time.Hour {
				t.Fatalf("after a local commit: wait %v", wait)
			}
		}
		_ = acc.Close()
	}
}
