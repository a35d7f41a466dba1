package fakenextcloud

import "testing"

// A login fault hits that login's requests only, in any spelling, and
// gives way to a server-wide fault; a bare status has no OCS body.
func TestLoginFaultAndBareStatus(t *testing.T) {
	s := New(t)
	s.DisableBruteForceProtection()
	s.AddUser("alice", "", pw1)
	s.AddUser("bob", "", pw2)
	s.SetLoginFault("Alice", Fault{Status: 500})

	if r := s.get(t, "v2", "ALICE", pw1, ""); r.status != 500 || r.body != `{"ocs":{"data":[],"meta":{"message":"Internal Server Error","status":"failure","statuscode":500}}}`+"\n" {
		t.Fatalf("alice: %d %s", r.status, r.body)
	}
	if r := s.get(t, "v2", "bob", pw2, ""); r.uid(t) != "bob" {
		t.Fatalf("bob: %d %s", r.status, r.body)
	}
	s.SetFault(Fault{BareStatus: 401})
	for _, login := range []string{"alice", "bob"} {
		if r := s.get(t, "v2", login, pw1, ""); r.status != 401 || r.body != "Unauthorized\n" {
			t.Fatalf("%s with a bare 401: %d %q", login, r.status, r.body)
		}
	}
	s.SetFault(Fault{})
	s.SetLoginFault("alice", Fault{})
	if r := s.get(t, "v2", "alice", pw1, ""); r.uid(t) != "alice" {
		t.Fatalf("alice after the fault: %d %s", r.status, r.body)
	}
}
