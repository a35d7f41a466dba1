package sweep_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/goleak"

	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep/sweeptest"
)

const waitLimit = 10 * time.Second // real time, only against a hung test

// Two replicas share one lease: over two days, rounds run one at a time,
// about one per interval in total (the jitter allows 0.9 to 1.1 of it),
// never two in one interval. When the holder stops (a replica leaves),
// the other takes over once the lease has expired.
func TestTwoSweepersOneRoundPerInterval(t *testing.T) {
	runTwoSweepers(t, &sweeptest.Lease{})
}

// runTwoSweepers runs the test above on a lease (in memory, Redis, Vault).
func runTwoSweepers(t *testing.T, lease sweep.Lease) {
	// Vault's HTTP client keeps its connections (and their goroutines)
	// for the next call.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
	clock := sweeptest.NewClock(t0)
	store, checker := newFakeStore(3), newFakeChecker(clock)
	cfg := sweep.Config{Rate: 1, Concurrency: 1} // 2 s of rate waits per round
	var recs []*recorder
	var sweepers []*sweep.Sweeper
	for i, holder := range []string{"a", "b"} {
		rec := newRecorder()
		recs = append(recs, rec)
		s, err := sweep.New(cfg, sweep.Deps{
			Store: store, Checker: checker, Lease: lease, Holder: holder, Clock: clock,
			Observer: rec, Rand: rand.New(rand.NewPCG(uint64(i), 7)).Float64,
		})
		if err != nil {
			t.Fatal(err)
		}
		sweepers = append(sweepers, s)
		s.Start()
		defer s.Stop()
	}

	// Each running sweeper, when idle, waits on exactly one timer (its
	// schedule or its rate); with all of them waiting, move the clock
	// to the next deadline.
	runUntil := func(end time.Time, running int) {
		t.Helper()
		for {
			if err := clock.WaitPending(running, waitLimit); err != nil {
				t.Fatal(err)
			}
			next, _ := clock.Next()
			if next.After(end) {
				return
			}
			clock.AdvanceTo(next)
		}
	}
	runUntil(t0.Add(48*time.Hour), 2)
	// Stop the replica that ran the last round.
	stopped := 0
	if last := func(i int) time.Time {
		r := recs[i].rounds()
		if len(r) == 0 {
			return time.Time{}
		}
		return r[len(r)-1].Started
	}; last(1).After(last(0)) {
		stopped = 1
	}
	holder := []string{"a", "b"}[stopped]
	sweepers[stopped].Stop()
	before := len(recs[1-stopped].rounds())
	runUntil(t0.Add(72*time.Hour), 1)

	var rounds []sweep.Report
	for _, rec := range recs {
		rounds = append(rounds, rec.rounds()...)
	}
	slices.SortFunc(rounds, func(a, b sweep.Report) int { return a.Started.Compare(b.Started) })
	if n := len(rounds); n < 63 || n > 81 {
		t.Errorf("%d rounds in 72 h with a 1 h interval, want 63 to 81", n)
	}
	if n := len(recs[1-stopped].rounds()) - before; n < 21 {
		t.Errorf("the replica left alone ran %d rounds in the last 24 h, want 21 or more", n)
	}
	for i, r := range rounds {
		if !r.Complete() || r.Checked != 3 {
			t.Errorf("round %d: %+v", i, r)
		}
		if i == 0 {
			continue
		}
		prev := rounds[i-1]
		gap := r.Started.Sub(prev.Started)
		// At most 1.1 interval apart, or 2.2 at the hand-over (the
		// lease expires, then the other replica's next attempt).
		if r.Started.Before(prev.Ended) || gap < 54*time.Minute || gap > 133*time.Minute {
			t.Errorf("round %d started %s after the one before (which ended %s after it started)", i, gap, prev.Ended.Sub(prev.Started))
		}
	}
	t.Logf("rounds by a: %d, by b: %d; %s stopped at 48 h", len(recs[0].rounds()), len(recs[1].rounds()), holder)
}

// Stop during a round cancels the check in flight, deletes nothing,
// gives the lease back and returns once the goroutine has ended.
func TestStopDuringRound(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	clock := sweeptest.NewClock(t0)
	store, checker, lease, rec := newFakeStore(5), newFakeChecker(clock), &sweeptest.Lease{}, newRecorder()
	checker.set(sweep.Rejected, "u000")
	inCheck := make(chan struct{})
	var checkErr error
	checker.hook = func(ctx context.Context, id string) *sweep.Verdict {
		if id == "u000" {
			close(inCheck)
			<-ctx.Done()
			checkErr = ctx.Err()
		}
		return nil
	}
	s, err := sweep.New(sweep.Config{}, sweep.Deps{Store: store, Checker: checker, Lease: lease, Holder: "a", Clock: clock, Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if err := clock.WaitPending(1, waitLimit); err != nil {
		t.Fatal(err)
	}
	first, _ := clock.Next()
	if d := first.Sub(t0); d > 6*time.Minute {
		t.Errorf("first attempt %s after start, want within a tenth of the interval", d)
	}
	clock.AdvanceTo(first)
	<-inCheck
	if h := lease.Holder(clock.Now()); h != "a" {
		t.Errorf("lease held by %q during the round", h)
	}

	s.Stop()
	if !errors.Is(checkErr, context.Canceled) {
		t.Errorf("the check in flight saw %v, want context.Canceled", checkErr)
	}
	rounds := rec.rounds()
	if len(rounds) != 1 || rounds[0].Stopped != sweep.StopCancelled || len(rounds[0].Deleted) != 0 {
		t.Errorf("rounds %+v", rounds)
	}
	if len(store.ids()) != 5 {
		t.Error("a cancelled round deleted a record")
	}
	if h := lease.Holder(clock.Now()); h != "" {
		t.Errorf("lease still held by %q after Stop", h)
	}
	if n := clock.Pending(); n != 0 {
		t.Errorf("%d timers left pending", n)
	}
}

func TestStartStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	clock := sweeptest.NewClock(t0)
	deps := sweep.Deps{Store: newFakeStore(1), Checker: newFakeChecker(clock), Clock: clock}

	off, err := sweep.New(sweep.Config{Off: true}, deps)
	if err != nil {
		t.Fatal(err)
	}
	idle := goleak.IgnoreCurrent()
	off.Start()
	if err := goleak.Find(idle); err != nil {
		t.Errorf("Start with off runs a goroutine: %v", err)
	}
	off.Stop()

	s, err := sweep.New(sweep.Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	s.Stop() // before Start: nothing to do
	s.Start()
	s.Start() // a second Start keeps the one goroutine (goleak checks)
	if err := clock.WaitPending(1, waitLimit); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Stop()
	s.Start() // again after Stop, as Caddy may
	if err := clock.WaitPending(1, waitLimit); err != nil {
		t.Fatal(err)
	}
	s.Stop()
}

// A round longer than half the interval renews the lease, so another
// replica does not start a second round under it.
func TestLeaseRenewedDuringLongRound(t *testing.T) {
	f := newFixture(t, 200, sweep.Config{Interval: caddy.Duration(time.Minute), Concurrency: 1})
	lease := &sweeptest.Lease{}
	a, err := sweep.New(sweep.Config{Interval: caddy.Duration(time.Minute), Concurrency: 1},
		sweep.Deps{Store: f.store, Checker: f.checker, Clock: f.clock, Lease: lease, Holder: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sweep.New(sweep.Config{Interval: caddy.Duration(time.Minute), SlowThreshold: caddy.Duration(time.Hour)},
		sweep.Deps{Store: f.store, Checker: f.checker, Clock: f.clock, Lease: lease, Holder: "b"})
	if err != nil {
		t.Fatal(err)
	}
	var tried atomic.Bool
	var bRan bool
	var bErr error
	f.checker.hook = func(ctx context.Context, id string) *sweep.Verdict {
		// 75 s into a's round, past its first lease's 60 s.
		if id == "u150" && tried.CompareAndSwap(false, true) {
			_, bRan, bErr = b.LeasedRound(ctx)
		}
		return nil
	}
	rep, ran, err := a.LeasedRound(context.Background())
	if !tried.Load() || bRan || bErr != nil {
		t.Errorf("b ran a round (tried %v, ran %v, err %v) while a's was under way", tried.Load(), bRan, bErr)
	}
	if err != nil || !ran || !rep.Complete() {
		t.Fatalf("a: ran %v, err %v, report %+v", ran, err, rep)
	}
	if d := rep.Ended.Sub(rep.Started); d < 99*time.Second {
		t.Fatalf("round took %s, want a round longer than the interval", d)
	}
	if h := lease.Holder(rep.Ended); h != "a" {
		t.Errorf("lease held by %q when a's round ended, want a", h)
	}
}

// flakyLease grants the first Acquire and answers the later ones with
// next.
type flakyLease struct {
	sweeptest.Lease
	calls int
	ok    bool
	err   error
}

func (l *flakyLease) Acquire(ctx context.Context, holder string, now time.Time, ttl time.Duration) (bool, error) {
	l.calls++
	if l.calls == 1 {
		return l.Lease.Acquire(ctx, holder, now, ttl)
	}
	return l.ok, l.err
}

func TestLeaseTrouble(t *testing.T) {
	newSweeper := func(f *fixture, lease sweep.Lease) *sweep.Sweeper {
		s, err := sweep.New(sweep.Config{Interval: caddy.Duration(time.Minute), SlowThreshold: caddy.Duration(time.Hour)},
			sweep.Deps{Store: f.store, Checker: f.checker, Clock: f.clock, Lease: lease, Holder: "a"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("taken over mid-round", func(t *testing.T) {
		f := newFixture(t, 200, sweep.Config{})
		rep, ran, err := newSweeper(f, &flakyLease{}).LeasedRound(context.Background())
		if !ran || err == nil || rep.Stopped != sweep.StopLeaseLost || rep.Checked < 60 || rep.Checked > 62 {
			t.Errorf("ran %v, err %v, stopped %q after %d checks; want lease_lost at 30 s", ran, err, rep.Stopped, rep.Checked)
		}
	})
	t.Run("store down while renewing", func(t *testing.T) {
		f := newFixture(t, 200, sweep.Config{})
		rep, _, err := newSweeper(f, &flakyLease{err: errors.New("redis: i/o timeout")}).LeasedRound(context.Background())
		// Renewal retries while the lease lasts (60 s = 120 checks).
		if err == nil || rep.Stopped != sweep.StopLeaseLost || rep.Checked < 120 || rep.Checked > 122 {
			t.Errorf("err %v, stopped %q after %d checks; want lease_lost at 60 s", err, rep.Stopped, rep.Checked)
		}
	})
	t.Run("store down before the round", func(t *testing.T) {
		f := newFixture(t, 5, sweep.Config{})
		lease := &flakyLease{calls: 1, err: errors.New("redis: connection refused")}
		_, ran, err := newSweeper(f, lease).LeasedRound(context.Background())
		if ran || err == nil || len(f.checker.checkedIDs()) != 0 {
			t.Errorf("ran %v, err %v", ran, err)
		}
	})
	t.Run("held by another", func(t *testing.T) {
		f := newFixture(t, 5, sweep.Config{})
		lease := &sweeptest.Lease{}
		if ok, _ := lease.Acquire(context.Background(), "b", f.clock.Now(), time.Hour); !ok {
			t.Fatal("b did not get the lease")
		}
		_, ran, err := newSweeper(f, lease).LeasedRound(context.Background())
		if ran || err != nil || len(f.checker.checkedIDs()) != 0 {
			t.Errorf("ran %v, err %v", ran, err)
		}
	})
}
