package caddyapppw

import (
	"testing"
)

// per_address counts the failed checks Nextcloud saw, never the
// successes: a client behind one address (a NAT, an office) whose users
// log in right is never refused, however many they are. Failing first:
// counting successes too (committing the address's attempt when the check
// passed) refuses the third good login from the address with 429.
func TestPerAddressNeverCountsSuccesses(t *testing.T) {
	e := newEnv(t, "rate_limit {\n per_address 2 1h\n }")
	e.trustLoopbackProxy()
	const office = "203.0.113.9"
	for _, uid := range []string{"alice", "bob", "carol", "dave", "erin"} {
		e.nc.AddUser(uid, "", alicePW)
	}
	for i, uid := range []string{"alice", "bob", "carol", "dave", "erin", "alice", "bob"} {
		a := e.callFrom(office, "GET", "/api/v1/users/"+uid+"/access", uid+":"+alicePW, "")
		if a.status != 200 {
			t.Fatalf("good login %d (%s) from one address under per_address 2: got %d %s, want 200", i+1, uid, a.status, a.body)
		}
	}
	// The failures still count: two wrong passwords, then the address is
	// refused before Nextcloud is asked.
	for _, uid := range []string{"carol", "dave"} {
		e.callFrom(office, "POST", "/api/v1/users/"+uid+"/app-password", uid+":"+alicePW2, "").
			expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	calls := e.nc.Calls()
	e.expectBlocked(e.callFrom(office, "GET", "/api/v1/users/erin/access", "erin:"+alicePW, ""), calls, true)
}
