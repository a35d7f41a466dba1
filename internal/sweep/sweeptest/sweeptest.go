// Package sweeptest has test doubles for the sweep: a fake clock that a
// test moves by hand (or that moves itself to every timer it is asked
// for), and a lease in memory.
package sweeptest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Clock is a fake sweep.Clock. Time stands still until Advance or
// AdvanceTo moves it, firing the timers that come due; in auto mode a new
// timer moves time to its deadline and fires at once, so a round paced
// at 2 checks per second runs without waiting.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*timer
	auto    bool
	changed chan struct{} // closed and replaced when the timers change
}

type timer struct {
	at time.Time
	c  chan time.Time
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start, changed: make(chan struct{})}
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements sweep.Clock.
func (c *Clock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 || c.auto {
		if t.at.After(c.now) {
			c.now = t.at
		}
		t.c <- c.now
		return t.c, func() bool { return false }
	}
	c.timers = append(c.timers, t)
	c.notifyLocked()
	return t.c, func() bool { return c.stop(t) }
}

func (c *Clock) stop(t *timer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	c.notifyLocked()
	return true
}

func (c *Clock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// SetAuto turns auto mode on or off.
func (c *Clock) SetAuto(on bool) {
	c.mu.Lock()
	c.auto = on
	c.mu.Unlock()
}

// Advance moves time by d, firing the timers that come due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	to := c.now.Add(d)
	c.mu.Unlock()
	c.AdvanceTo(to)
}

// AdvanceTo moves time to t (never back), firing the timers due by then.
func (c *Clock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	kept := c.timers[:0]
	fired := false
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			kept = append(kept, tm)
			continue
		}
		tm.c <- c.now
		fired = true
	}
	clear(c.timers[len(kept):])
	c.timers = kept
	if fired {
		c.notifyLocked()
	}
}

// Next is the earliest pending timer's deadline; false when none is
// pending.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	next := c.timers[0].at
	for _, t := range c.timers[1:] {
		if t.at.Before(next) {
			next = t.at
		}
	}
	return next, true
}

// Pending is how many timers wait to fire.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitPending blocks until exactly n timers are pending: the goroutines
// under test have all come to wait on the clock. The timeout (real time)
// only keeps a broken test from hanging.
func (c *Clock) WaitPending(n int, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		have, changed := len(c.timers), c.changed
		c.mu.Unlock()
		if have == n {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("sweeptest: %d timers pending after %s, want %d", have, timeout, n)
		}
	}
}

// Lease is a sweep.Lease in memory, for the sweepers of one process.
type Lease struct {
	mu      sync.Mutex
	holder  string
	expires time.Time
}

// Acquire implements sweep.Lease.
func (l *Lease) Acquire(_ context.Context, holder string, now time.Time, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != "" && l.holder != holder && now.Before(l.expires) {
		return false, nil
	}
	l.holder, l.expires = holder, now.Add(ttl)
	return true, nil
}

// Release implements sweep.Lease.
func (l *Lease) Release(_ context.Context, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == holder {
		l.holder, l.expires = "", time.Time{}
	}
	return nil
}

// Holder is the current holder ("" when free or expired at now).
func (l *Lease) Holder(now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.expires) {
		return l.holder
	}
	return ""
}
