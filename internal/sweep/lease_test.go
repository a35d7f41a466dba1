package sweep_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep/sweeptest"
)

// leaseContract runs two holders through a lease: it is taken when free,
// refused while another's is live, extended by its holder, taken once
// expired, and released only by its holder.
func leaseContract(t *testing.T, lease sweep.Lease) {
	t.Helper()
	ctx := context.Background()
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	for i, step := range []struct {
		holder string
		min    int
		want   bool
	}{
		{"a", 0, true},   // free
		{"b", 1, false},  // a's
		{"a", 30, true},  // a's own: extended to 1h30
		{"b", 61, false}, // still a's, thanks to the extension
		{"b", 91, true},  // expired: b takes it
		{"a", 92, false}, // b's
	} {
		got, err := lease.Acquire(ctx, step.holder, at(step.min), time.Hour)
		if err != nil || got != step.want {
			t.Fatalf("step %d: %s at +%dm got %v (err %v), want %v", i, step.holder, step.min, got, err, step.want)
		}
	}
	if err := lease.Release(ctx, "a"); err != nil { // not a's: no effect
		t.Fatal(err)
	}
	if got, err := lease.Acquire(ctx, "a", at(93), time.Hour); got || err != nil {
		t.Fatalf("a took b's lease after releasing its own expired one (%v, %v)", got, err)
	}
	if err := lease.Release(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got, err := lease.Acquire(ctx, "a", at(94), time.Hour); !got || err != nil {
		t.Fatalf("a did not get the released lease (%v, %v)", got, err)
	}
}

// leaseRace has n holders ask for an expired lease at the same time:
// exactly one gets it.
func leaseRace(t *testing.T, lease sweep.Lease, n int) {
	t.Helper()
	now := t0.Add(100 * time.Hour)
	var wins atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			ok, err := lease.Acquire(context.Background(), fmt.Sprintf("racer-%d", i), now, time.Hour)
			if err != nil {
				errs <- err
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("racer: %v", err)
	}
	if w := wins.Load(); w != 1 {
		t.Errorf("%d of %d racers got the lease, want exactly 1", w, n)
	}
}

func TestMemoryLease(t *testing.T) {
	leaseContract(t, &sweeptest.Lease{})
	leaseRace(t, &sweeptest.Lease{}, 8)
}
