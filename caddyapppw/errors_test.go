package caddyapppw

import (
	"testing"
	"time"
)

// The 429's N is the wait rounded up to a second, at least 1: a client
// that waits N seconds never comes back too early.
func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{
		time.Nanosecond:         1,
		time.Second:             1,
		time.Second + 1:         2,
		30 * time.Minute:        1800,
		time.Hour - time.Minute: 3540,
	} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}
