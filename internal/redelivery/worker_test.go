package redelivery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/mcpserver"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep/sweeptest"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// answers is a Deliver that answers each user with a fixed outcome and
// records what it was asked.
type answers struct {
	mu    sync.Mutex
	out   map[string]mcpserver.Outcome
	asked []vaultkv.Record
}

func (a *answers) deliver(_ context.Context, rec *vaultkv.Record) mcpserver.Outcome {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, *rec)
	return a.out[rec.UserID]
}

type counts struct {
	mu      sync.Mutex
	results map[string]int
	pending []int
	standby int
}

func (c *counts) Redelivered(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results[r]++
}

func (c *counts) Standby() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.standby++
}

func (c *counts) Pending(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, n)
}

func newWorker(t *testing.T, s *mapStore, a *answers, now *time.Time, lease *sweeptest.Lease) (*Worker, *counts) {
	t.Helper()
	c := &counts{results: map[string]int{}}
	deps := Deps{Store: s, Deliver: a.deliver, Observer: c, Holder: "me", Now: func() time.Time { return *now }}
	if lease != nil {
		deps.Lease = lease
	}
	w, err := New(time.Second, 24*time.Hour, deps)
	if err != nil {
		t.Fatal(err)
	}
	return w, c
}

var (
	accepted    = mcpserver.Outcome{Kind: mcpserver.Accepted, Status: 200}
	unreachable = mcpserver.Outcome{Kind: mcpserver.Unreachable, Status: 502}
	throttled   = mcpserver.Outcome{Kind: mcpserver.Refused, Status: 429, RetryAfter: 10 * time.Minute}
	unauthz     = mcpserver.Outcome{Kind: mcpserver.Refused, Status: 401}
	badRequest  = mcpserver.Outcome{Kind: mcpserver.Refused, Status: 400}
)

// One round: each record's outcome decides what becomes of it.
func TestRoundSettlesEachOutcome(t *testing.T) {
	s := newMapStore()
	now := t0
	pend := func(uid string, p vaultkv.Pending) {
		s.put(vaultkv.Record{UserID: uid, AppPassword: "pw-" + uid, MCPPending: p, MCPPendingSince: now.Unix()})
	}
	pend("accepted", vaultkv.PendingPost)
	pend("down", vaultkv.PendingPost)
	pend("limited", vaultkv.PendingPatch)
	pend("refused", vaultkv.PendingPatch)
	pend("deleted", vaultkv.PendingDelete)
	pend("delete-401", vaultkv.PendingDelete)
	pend("delete-down", vaultkv.PendingDelete)
	s.put(vaultkv.Record{UserID: "in-sync"})
	a := &answers{out: map[string]mcpserver.Outcome{
		"accepted": accepted, "down": unreachable, "limited": throttled, "refused": badRequest,
		"deleted": accepted, "delete-401": unauthz, "delete-down": unreachable,
	}}
	w, c := newWorker(t, s, a, &now, nil)
	n, err := w.Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("%d still pending, want 3 (down, limited, delete-down)", n)
	}
	for uid, want := range map[string]vaultkv.Pending{
		"accepted": "", "down": vaultkv.PendingPost, "limited": vaultkv.PendingPatch, "refused": "",
		"delete-down": vaultkv.PendingDelete,
	} {
		if rec, ok := s.get(uid); !ok || rec.MCPPending != want {
			t.Errorf("%s: stored %+v, %v; want pending %q", uid, rec, ok, want)
		}
	}
	for _, uid := range []string{"deleted", "delete-401"} {
		if _, ok := s.get(uid); ok {
			t.Errorf("%s: Vault still holds the removed record", uid)
		}
	}
	if len(a.asked) != 7 {
		t.Fatalf("asked %d times, want 7 (never the record in sync)", len(a.asked))
	}
	want := map[string]int{"accepted": 2, "unreachable": 2, "throttled": 1, "refused": 2}
	for k, v := range want {
		if c.results[k] != v {
			t.Errorf("results %v, want %v", c.results, want)
			break
		}
	}

	// The next round: the throttled user waits for its Retry-After.
	a.asked = nil
	now = now.Add(time.Minute)
	if _, err := w.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range a.asked {
		if r.UserID == "limited" {
			t.Fatal("asked again before the MCP server's Retry-After")
		}
	}
	now = now.Add(10 * time.Minute)
	a.asked = nil
	if _, err := w.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(a.asked) != 3 {
		t.Fatalf("asked %v after the Retry-After", a.asked)
	}
}

// A deletion the MCP server cannot be reached for is kept at most give_up
// (the password the user removed with it), then deleted from Vault.
func TestDeletionGivenUp(t *testing.T) {
	s := newMapStore()
	now := t0
	s.put(vaultkv.Record{UserID: "u", AppPassword: "pw", MCPPending: vaultkv.PendingDelete, MCPPendingSince: now.Unix()})
	a := &answers{out: map[string]mcpserver.Outcome{"u": unreachable}}
	w, c := newWorker(t, s, a, &now, nil)
	now = now.Add(24*time.Hour - time.Second)
	if _, err := w.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.get("u"); !ok {
		t.Fatal("deleted before give_up")
	}
	now = now.Add(time.Second)
	if _, err := w.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.get("u"); ok || c.results["given_up"] != 1 {
		t.Fatalf("after give_up: still stored %v, results %v", ok, c.results)
	}
}

// A provisioning after the deletion was marked keeps its new record: the
// deletion settles only the record it was marked on.
func TestDeletionKeepsAReprovisioning(t *testing.T) {
	s := newMapStore()
	now := t0
	s.put(vaultkv.Record{UserID: "u", AppPassword: "old", MCPPending: vaultkv.PendingDelete, MCPPendingSince: now.Unix()})
	a := &answers{out: map[string]mcpserver.Outcome{"u": accepted}}
	w, _ := newWorker(t, s, a, &now, nil)
	rec, _ := s.Load(context.Background(), "u")
	s.put(vaultkv.Record{UserID: "u", AppPassword: "new"})
	w.redeliver(context.Background(), rec)
	if got, ok := s.get("u"); !ok || got.AppPassword != "new" {
		t.Fatalf("stored %+v, %v", got, ok)
	}
}

// A round runs only with the lease; another holder's lease skips it.
func TestLeasedRound(t *testing.T) {
	s := newMapStore()
	now := t0
	s.put(vaultkv.Record{UserID: "u", MCPPending: vaultkv.PendingPost})
	a := &answers{out: map[string]mcpserver.Outcome{"u": unreachable}}
	lease := &sweeptest.Lease{}
	if ok, _ := lease.Acquire(context.Background(), "other", now, time.Hour); !ok {
		t.Fatal("the lease was not free")
	}
	w, c := newWorker(t, s, a, &now, lease)
	if n, err := w.LeasedRound(context.Background()); n != -1 || err != nil || len(a.asked) != 0 || c.standby != 1 {
		t.Fatalf("round without the lease: %d, %v, asked %d, standby %d", n, err, len(a.asked), c.standby)
	}
	now = now.Add(time.Hour)
	if n, err := w.LeasedRound(context.Background()); n != 1 || err != nil || len(a.asked) != 1 {
		t.Fatalf("round with the lease: %d, %v, asked %d", n, err, len(a.asked))
	}
}
