package caddyapppw

import (
	"slices"
	"testing"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep/sweeptest"
)

// The memory store is a sweep source too, so that this runs in the fast
// lane.
var _ sweepSource = (*memStore)(nil)

// The sweep logs in to Nextcloud with the stored login name (the record's
// username), and as the user id only when none was stored, as the API
// does. A round over the memory store: alice logs in as her e-mail
// address, which Nextcloud accepts and her uid it does not; bob has no
// stored login name; carol's password was revoked. Failing first: with
// the sweep logging in as the uid (sweepStore.Load ignoring the stored
// username), Nextcloud refuses alice's check and the round deletes her
// valid password.
func TestSweepLogsInWithTheStoredLoginName(t *testing.T) {
	nc := fakenextcloud.New(t)
	nc.DisableBruteForceProtection()
	nc.AddUser("alice", "alice@example.com", alicePW)
	nc.AddUser("bob", "", alicePW)
	nc.AddUser("carol", "carol@example.com") // the app password revoked
	mem := newMemStore()
	for uid, login := range map[string]any{"alice": "alice@example.com", "bob": nil, "carol": "carol@example.com"} {
		if err := mem.put(uid, map[string]any{
			"user_id": uid, "app_password": alicePW, "username": login, "scopes": nil,
			"created_at": 1_799_000_000, "updated_at": 1_799_000_000,
		}); err != nil {
			t.Fatal(err)
		}
	}
	client := nextcloudClient(t, nc.URL)
	clock := sweeptest.NewClock(sweepStart)
	clock.SetAuto(true)
	s, err := sweep.New(sweep.Config{}, sweep.Deps{Store: sweepStore{mem}, Checker: sweepChecker{client}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Round(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checked != 3 || rep.Valid != 2 || rep.Rejected != 1 || !slices.Equal(rep.Deleted, []string{"carol"}) {
		t.Fatalf("round: checked %d, valid %d, rejected %d, deleted %v; want 3 checked, 2 valid, carol alone deleted",
			rep.Checked, rep.Valid, rep.Rejected, rep.Deleted)
	}
	if ids, _ := mem.List(t.Context()); !slices.Equal(ids, []string{"alice", "bob"}) {
		t.Fatalf("the store holds %v after the round, want alice and bob", ids)
	}
}
