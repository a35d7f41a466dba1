package sweep

import (
	"context"
	"time"
)

// Lease lets one replica of several sweep per interval. The sweeper takes
// it for one interval before a round (and renews it during a round that
// lasts longer than half of that) and keeps it until it expires, so a
// replica that wakes later in the same interval finds it held and skips.
// A replica that dies mid-round loses it at its expiry.
//
// Time comes from the caller's clock, not the lease store's: replicas'
// clocks should agree (as NTP makes them; the shared rate limiter relies
// on that too), and tests can drive the lease with a fake clock. A clock
// that is off by s seconds takes an expired lease s seconds early or late.
type Lease interface {
	// Acquire takes the lease for holder until now+ttl when it is free
	// or expired, or extends it when holder already holds it; it
	// reports false (and no error) while another holder's lease is
	// live. It never shortens nor takes over another holder's lease.
	Acquire(ctx context.Context, holder string, now time.Time, ttl time.Duration) (bool, error)

	// Release gives the lease up if holder still holds it, so another
	// replica can sweep at once; another holder's lease is left alone.
	Release(ctx context.Context, holder string) error
}
