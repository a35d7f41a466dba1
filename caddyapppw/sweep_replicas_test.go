package caddyapppw

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/vault/api"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep/sweeptest"
)

// startReplica provisions the app_password handler of a Caddyfile as a
// second Caddy process on the same Vault would: its own context, Vault
// client, Nextcloud client, limiter and sweeper (its own lease holder),
// started as Caddy starts it. It is cleaned up when the test ends.
func startReplica(t *testing.T, caddyfileText string) {
	t.Helper()
	var raw any
	if err := json.Unmarshal(adapt(t, caddyfileText), &raw); err != nil {
		t.Fatal(err)
	}
	handlers := findHandlers(raw, nil)
	if len(handlers) != 1 {
		t.Fatalf("%d handlers", len(handlers))
	}
	h := new(Handler)
	if err := json.Unmarshal(handlers[0], h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := h.Provision(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
}

// runReplicas runs the Caddy of e and a replica of its config on one
// sweep clock for a day, and returns when each round started. Three users
// are stored; every check of a round is one request to the fake
// Nextcloud, so a round starts where the requests resume after a pause.
func runReplicas(t *testing.T, e *env, clock *sweeptest.Clock) []time.Time {
	t.Helper()
	seedSweepUsers(e, 3, nil, nil)
	startReplica(t, e.caddyfile(e.settings))
	var starts []time.Time
	calls := e.nc.Calls()
	end := sweepStart.Add(24 * time.Hour)
	for {
		if err := clock.WaitPending(2, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if c := e.nc.Calls(); c != calls {
			if now := clock.Now(); len(starts) == 0 || now.Sub(starts[len(starts)-1]) > time.Minute {
				starts = append(starts, now)
			}
			calls = c
		}
		next, _ := clock.Next()
		if next.After(end) {
			break
		}
		clock.AdvanceTo(next)
	}
	if calls != 3*int64(len(starts)) {
		t.Errorf("%d checks in %d rounds, want 3 a round", calls, len(starts))
	}
	return starts
}

// oneRoundPerInterval fails unless the rounds of a day came about once
// an hour: never two within 0.9 of the interval (the least a replica
// waits, jitter included), and at most 27 in 24 hours, where two
// replicas sweeping on their own would run about 48.
func oneRoundPerInterval(t *testing.T, starts []time.Time) {
	t.Helper()
	if n := len(starts); n < 18 || n > 27 {
		t.Errorf("%d rounds in 24 h with a 1 h interval and two replicas, want 18 to 27: %v", n, starts)
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < 54*time.Minute || gap > 132*time.Minute {
			t.Errorf("rounds %d and %d are %s apart", i-1, i, gap)
		}
	}
}

// Two Caddy replicas on one Vault sweep about once per interval in all:
// the lease is a Vault record beside the users'.
func TestSweepTwoReplicasOneVault(t *testing.T) {
	needsVault(t)
	clock := useSweepClock(t)
	e := newEnv(t, sweepFast)
	oneRoundPerInterval(t, runReplicas(t, e, clock))
	if _, err := e.vault.Root.KVv2(e.mount).Get(t.Context(), e.prefix+"/_sweep/lease"); err != nil {
		t.Fatalf("no lease record in Vault: %v", err)
	}
}

// And on one Redis, where the lease is a key beside the rate limit's,
// named for the store swept; Vault then holds no lease record.
func TestSweepTwoReplicasOneRedis(t *testing.T) {
	needsVault(t)
	srv := redistest.Start(t)
	clock := useSweepClock(t)
	e := newEnv(t, sweepFast+"\nrate_limit {\n redis "+srv.URL()+"\n }")
	oneRoundPerInterval(t, runReplicas(t, e, clock))

	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer client.Close()
	key := "caddy-apppw:sweep:secret/" + e.prefix
	lease, err := client.HGetAll(t.Context(), key).Result()
	if host := hostname(t); err != nil || !strings.HasPrefix(lease["holder"], host+"-") || lease["expires"] == "" {
		t.Fatalf("lease %s in Redis: %v %v", key, lease, err)
	}
	if _, err := e.vault.Root.KVv2(e.mount).Get(t.Context(), e.prefix+"/_sweep/lease"); err == nil || !strings.Contains(err.Error(), api.ErrSecretNotFound.Error()) {
		t.Fatalf("a lease record in Vault besides Redis: %v", err)
	}
}

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// sweeperLoops counts the goroutines that run a sweeper's schedule.
func sweeperLoops() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "internal/sweep.(*Sweeper).Start in goroutine")
}

// A reload in the middle of a round cancels it and hands over to the new
// config's sweeper, which runs the next round at once (the old one gave
// its lease back): one sweeper afterwards, one round per interval, and
// once Caddy stops, no goroutine of either left.
func TestSweepReloadDuringRound(t *testing.T) {
	needsVault(t)
	verifyNoLeaks(t)
	clock := useSweepClock(t)
	e := newEnv(t, sweepFast)
	seedSweepUsers(e, 10, nil, nil)
	if n := sweeperLoops(); n != 1 {
		t.Fatalf("%d sweepers before the reload", n)
	}

	// Into the round: four checks answered, the fifth waits for its turn.
	for e.nc.Calls() < 4 {
		if err := clock.WaitPending(1, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		next, _ := clock.Next()
		clock.AdvanceTo(next)
	}
	if err := clock.WaitPending(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if next, _ := clock.Next(); next.Sub(clock.Now()) > time.Second {
		t.Fatalf("no round in progress: the next timer is at %s", next)
	}

	e.reload(e.caddyfile("sweep {\n rate 49\n }"))
	if n := sweeperLoops(); n != 1 {
		t.Fatalf("%d sweepers after the reload", n)
	}
	reloaded := clock.Now()

	// The new sweeper's first try comes within a tenth of the interval,
	// and it finds the lease free: the old one gave it back.
	driveSweep(t, clock, 1, reloaded.Add(7*time.Minute))
	ended := e.loggerLines(sweepLogger, msgSweepEnded)
	if len(ended) != 2 || ended[0]["stopped"] != "cancelled" || ended[0]["checked"].(float64) >= 10 ||
		ended[1]["stopped"] != "" || ended[1]["checked"] != 10.0 {
		t.Fatalf("rounds %v; want the one the reload cut, then a whole one", ended)
	}
	// Then one an interval.
	driveSweep(t, clock, 1, reloaded.Add(3*time.Hour+7*time.Minute))
	ended = e.loggerLines(sweepLogger, msgSweepEnded)
	if len(ended) < 4 || len(ended) > 5 {
		t.Fatalf("%d rounds, want 2 or 3 more in 3 h", len(ended))
	}
	for _, l := range ended[1:] {
		if l["stopped"] != "" || l["checked"] != 10.0 {
			t.Errorf("a round after the reload: %v", l)
		}
	}
	if e.stored("u000") == nil || len(e.storedIDs()) != 11 {
		t.Errorf("Vault holds %v", e.storedIDs())
	}
	if n := sweeperLoops(); n != 1 {
		t.Fatalf("%d sweepers", n)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := sweeperLoops(); n != 0 {
		t.Fatalf("%d sweepers after Caddy stopped", n)
	}
}
