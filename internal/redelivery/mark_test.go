package redelivery

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

var t0 = time.Unix(1_800_000_000, 0)

// A later change supersedes an earlier one of lower or equal rank; a
// scope change never downgrades a pending provisioning (which must still
// bring the password), nor anything a pending deletion.
func TestMarkSupersedes(t *testing.T) {
	cases := []struct{ had, mark, want vaultkv.Pending }{
		{vaultkv.PendingNone, vaultkv.PendingPatch, vaultkv.PendingPatch},
		{vaultkv.PendingNone, vaultkv.PendingPost, vaultkv.PendingPost},
		{vaultkv.PendingPatch, vaultkv.PendingPost, vaultkv.PendingPost},
		{vaultkv.PendingPost, vaultkv.PendingPatch, vaultkv.PendingPost},
		{vaultkv.PendingPost, vaultkv.PendingDelete, vaultkv.PendingDelete},
		{vaultkv.PendingDelete, vaultkv.PendingPatch, vaultkv.PendingDelete},
	}
	for _, c := range cases {
		s := newMapStore()
		since := int64(0)
		if c.had != vaultkv.PendingNone {
			since = 5
		}
		s.put(vaultkv.Record{UserID: "u", MCPPending: c.had, MCPPendingSince: since})
		got, err := Mark(context.Background(), s, "u", c.mark, t0)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := s.get("u")
		if got.MCPPending != c.want || rec.MCPPending != c.want {
			t.Errorf("%q then %q: marked %q, stored %q; want %q", c.had, c.mark, got.MCPPending, rec.MCPPending, c.want)
		}
		// The first time the record fell behind is kept.
		if want := int64(5); c.had == vaultkv.PendingNone {
			want = t0.Unix()
			if rec.MCPPendingSince != want {
				t.Errorf("since %d, want %d", rec.MCPPendingSince, want)
			}
		} else if rec.MCPPendingSince != want {
			t.Errorf("since %d, want %d", rec.MCPPendingSince, want)
		}
	}
}

// Marking a record that a concurrent writer replaced marks the new one.
func TestMarkRetriesOverAConcurrentWrite(t *testing.T) {
	s := newMapStore()
	s.put(vaultkv.Record{UserID: "u", AppPassword: "old"})
	s.before = func() { s.put(vaultkv.Record{UserID: "u", AppPassword: "new"}) }
	if _, err := Mark(context.Background(), s, "u", vaultkv.PendingPost, t0); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.get("u"); rec.AppPassword != "new" || rec.MCPPending != vaultkv.PendingPost {
		t.Fatalf("stored %+v", rec)
	}
}

// Settle clears a mark only when the delivered change covers it and the
// record is still the one delivered; if the record changed meanwhile, the
// delivered (older) state may have reached the MCP server last, so the
// record is marked for a provisioning of its current state.
func TestSettle(t *testing.T) {
	ctx := context.Background()
	t.Run("covered", func(t *testing.T) {
		s := newMapStore()
		rec := s.put(vaultkv.Record{UserID: "u", MCPPending: vaultkv.PendingPatch, MCPPendingSince: 1})
		if err := Settle(ctx, s, "u", rec.Version, vaultkv.PendingPost, t0); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.get("u"); got.MCPPending != vaultkv.PendingNone || got.MCPPendingSince != 0 {
			t.Fatalf("stored %+v", got)
		}
	})
	t.Run("a scope change does not cover a provisioning", func(t *testing.T) {
		s := newMapStore()
		rec := s.put(vaultkv.Record{UserID: "u", MCPPending: vaultkv.PendingPost})
		if err := Settle(ctx, s, "u", rec.Version, vaultkv.PendingPatch, t0); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.get("u"); got.MCPPending != vaultkv.PendingPost {
			t.Fatalf("stored %+v", got)
		}
	})
	t.Run("in sync stays unwritten", func(t *testing.T) {
		s := newMapStore()
		rec := s.put(vaultkv.Record{UserID: "u"})
		if err := Settle(ctx, s, "u", rec.Version, vaultkv.PendingPost, t0); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.get("u"); got.Version != rec.Version {
			t.Fatal("a record in sync was written again")
		}
	})
	t.Run("changed meanwhile", func(t *testing.T) {
		s := newMapStore()
		old := s.put(vaultkv.Record{UserID: "u", AppPassword: "old"})
		s.put(vaultkv.Record{UserID: "u", AppPassword: "new"})
		if err := Settle(ctx, s, "u", old.Version, vaultkv.PendingPost, t0); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.get("u"); got.AppPassword != "new" || got.MCPPending != vaultkv.PendingPost || got.MCPPendingSince != t0.Unix() {
			t.Fatalf("stored %+v", got)
		}
	})
	t.Run("gone", func(t *testing.T) {
		if err := Settle(ctx, newMapStore(), "u", 3, vaultkv.PendingPost, t0); err != nil {
			t.Fatal(err)
		}
	})
}
