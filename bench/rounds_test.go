package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestFixedRoundsLeaveSidesEven: in alternating rounds of a fixed count,
// an even number of them, each side's rounds start on average with as
// many keys stored.
func TestFixedRoundsLeaveSidesEven(t *testing.T) {
	processes = nil // no CPU readings in this test
	var keys atomic.Int64
	write := func(context.Context, int) (time.Duration, error) {
		keys.Add(1)
		return 0, nil
	}
	p := plan{rounds: 4, round: time.Hour, workers: 2, warmup: 10}
	wa, wb := warmUp(p, write, write)
	if wa.correct != 10 || wb.correct != 10 || keys.Load() != 20 {
		t.Fatalf("warm-up: %d and %d answers, %d keys; want 10, 10, 20", wa.correct, wb.correct, keys.Load())
	}
	a, b := alternate(p, rounds{n: 30, gauge: keys.Load}, write, write)
	if a.correct != 120 || b.correct != 120 {
		t.Fatalf("%d and %d answers; want 4 rounds of 30 each", a.correct, b.correct)
	}
	// A B | B A | A B | B A: A starts at 20, 110, 140, 230; B at 50, 80, 170, 200.
	if ma, mb := mean(a.gauge), mean(b.gauge); ma != 125 || mb != 125 || len(a.gauge) != 4 {
		t.Errorf("keys when rounds began: A %v (mean %v), B %v (mean %v); want 125 for both", a.gauge, ma, b.gauge, mb)
	}
	if n := perRound(plan{round: 2 * time.Second, workers: 8}, result{correct: 300, elapsed: time.Second}, result{correct: 100, elapsed: time.Second}); n != 400 {
		t.Errorf("perRound: %d, want 400 (a mean rate of 200/s for 2 s)", n)
	}
	if n := perRound(plan{round: time.Millisecond, workers: 8}, result{}, result{}); n != 32 {
		t.Errorf("perRound without a rate: %d, want 4 per worker", n)
	}
}
