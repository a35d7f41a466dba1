package sweep_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
)

func redisClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisLease(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	client := redisClient(t, redistest.Start(t))
	ctx := context.Background()

	t.Run("contract", func(t *testing.T) {
		leaseContract(t, &sweep.RedisLease{Client: client, Key: "caddy-apppw:sweep:lease:contract"})
	})
	t.Run("race", func(t *testing.T) {
		leaseRace(t, &sweep.RedisLease{Client: client, Key: "caddy-apppw:sweep:lease:race"}, 16)
	})
	t.Run("record and expiry", func(t *testing.T) {
		key := "caddy-apppw:sweep:lease:record"
		lease := &sweep.RedisLease{Client: client, Key: key}
		if ok, err := lease.Acquire(ctx, "a", t0, time.Hour); !ok || err != nil {
			t.Fatal(ok, err)
		}
		got, err := client.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := t0.Add(time.Hour).UnixMilli(); got["holder"] != "a" || got["expires"] != strconv.FormatInt(want, 10) {
			t.Errorf("lease record %v, want holder a, expires %d", got, want)
		}
		// Redis forgets the lease on its own once it is over.
		if ttl := client.PTTL(ctx, key).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("key expires in %s, want 1h", ttl)
		}
	})
	t.Run("redis down", func(t *testing.T) {
		down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
		defer down.Close()
		lease := &sweep.RedisLease{Client: down, Key: "k"}
		if ok, err := lease.Acquire(ctx, "a", t0, time.Hour); ok || err == nil {
			t.Errorf("acquire with redis down: %v, %v; want an error", ok, err)
		}
	})
}

// Two sweepers on one Redis, on a fake clock: one round per interval.
func TestTwoSweepersOneRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	client := redisClient(t, redistest.Start(t))
	runTwoSweepers(t, &sweep.RedisLease{Client: client, Key: "caddy-apppw:sweep:lease"})
}
