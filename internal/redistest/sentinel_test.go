package redistest

import (
	"testing"
	"time"
)

// The set fails over the way production's does: the primary killed, the
// sentinels promote the replica.
func TestSentinelPromotesTheReplica(t *testing.T) {
	s := StartSentinel(t)
	if a, err := s.PrimaryAddr(); err != nil || a != s.Primary.Addr {
		t.Fatalf("primary %q (%v), want %s", a, err, s.Primary.Addr)
	}
	start := time.Now()
	s.Primary.Kill()
	a, err := s.WaitFailover(s.Primary.Addr, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if a != s.Replica.Addr {
		t.Fatalf("promoted %s, want %s", a, s.Replica.Addr)
	}
	t.Logf("failover took %s", time.Since(start).Round(time.Millisecond))
}
