package sweep

import "time"

// Clock is the time the sweeper runs on: its schedule, its rate and the
// latency it measures. Tests pass a fake one (sweeptest.Clock) so a day
// of rounds runs in milliseconds without a single sleep.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed, and a
	// function that stops the timer (the shape golang.org/x/time/rate
	// uses for its own timers).
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
