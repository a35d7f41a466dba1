package ratelimit

import (
	"testing"
	"time"
)

func TestLimiterStateOutlivesAConfig(t *testing.T) {
	lim := limits{attempts: 5, window: time.Hour, maxUsers: 10}
	a := newLocal(Accounts, "zone-test", lim)
	b := newLocal(Accounts, "zone-test", lim) // the next config, before the old one is cleaned up
	addr := newLocal(Addresses, "zone-test", lim)
	_ = a.Close()
	_ = a.Close() // a second Close lets go of nothing more
	if a.state != b.state {
		t.Fatal("a second config got other state")
	}
	if addr.state == b.state {
		t.Fatal("the per-address limit shares the per-account state")
	}
	_ = b.Close()
	c := newLocal(Accounts, "zone-test", lim)
	if c.state == a.state {
		t.Fatal("state kept after its last user let go")
	}
	_ = c.Close()
	_ = addr.Close()
}
