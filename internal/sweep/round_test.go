package sweep_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
)

// revoked are the 20 users whose password Nextcloud rejects: u005, u015,
// … u195. broken are 5 users Nextcloud answers 500 for, apart from each
// other.
var (
	revoked = func() (ids []string) {
		for i := 5; i < 200; i += 10 {
			ids = append(ids, userID(i))
		}
		return ids
	}()
	broken = []string{"u033", "u077", "u111", "u150", "u188"}
)

func keptIDs(rep sweep.Report) []string {
	var ids []string
	for _, k := range rep.Kept {
		ids = append(ids, k.UserID)
	}
	return ids
}

func without(all, drop []string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(id string) bool { return slices.Contains(drop, id) })
}

func TestRoundDeletesExactlyTheRejected(t *testing.T) {
	f := newFixture(t, 200, sweep.Config{})
	f.checker.set(sweep.Rejected, revoked...)
	f.checker.set(sweep.Unavailable, broken...)
	all := f.store.ids()

	rep, err := f.sweeper.Round(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete() || rep.Listed != 200 || rep.Checked != 200 || rep.Valid != 175 || rep.Rejected != 20 || rep.Unchecked != 0 {
		t.Errorf("report = %+v; want a complete round of 200 checks, 175 valid, 20 rejected", rep)
	}
	if !slices.Equal(rep.Deleted, revoked) {
		t.Errorf("deleted %v, want %v", rep.Deleted, revoked)
	}
	if got := f.store.ids(); !slices.Equal(got, without(all, revoked)) {
		t.Errorf("store keeps %d users, want the 180 others", len(got))
	}
	if !slices.Equal(keptIDs(rep), broken) {
		t.Errorf("kept on error %v, want %v", keptIDs(rep), broken)
	}
	for _, k := range rep.Kept {
		if k.Reason != "nextcloud check failed: nextcloud answered HTTP 500" {
			t.Errorf("kept %s for %q", k.UserID, k.Reason)
		}
	}
	if got := f.logged("sweep deleted a stale app password: nextcloud rejects it"); !slices.Equal(got, revoked) {
		t.Errorf("audit lines for %v, want %v", got, revoked)
	}
	if got := f.logged("sweep kept an app password it could not check"); !slices.Equal(got, broken) {
		t.Errorf("kept lines for %v, want %v", got, broken)
	}
	if rounds := f.obs.rounds(); len(rounds) != 1 || len(rounds[0].Deleted) != 20 || len(rounds[0].Kept) != 5 {
		t.Errorf("observer saw %+v", rounds)
	}
	if f.obs.checked[sweep.Valid] != 175 || f.obs.checked[sweep.Rejected] != 20 || f.obs.checked[sweep.Unavailable] != 5 {
		t.Errorf("observer counted %v", f.obs.checked)
	}
	// Bounded: 2 per second (200 checks need 199 s / 2), 2 at a time.
	if d := rep.Ended.Sub(rep.Started); d < 99500*time.Millisecond {
		t.Errorf("200 checks took %s of the clock, want at least 99.5 s at 2 per second", d)
	}
	if f.checker.maxIn > sweep.DefaultConcurrency {
		t.Errorf("%d checks in flight at once, want at most %d", f.checker.maxIn, sweep.DefaultConcurrency)
	}
	f.noSecretsLogged(t)
}

func TestRoundDryRunDeletesNothing(t *testing.T) {
	f := newFixture(t, 200, sweep.Config{})
	f.checker.set(sweep.Rejected, revoked...)
	f.checker.set(sweep.Unavailable, broken...)

	rep, err := f.sweeper.Round(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.DryRun || !rep.Complete() || len(rep.Deleted) != 0 || !slices.Equal(rep.WouldDelete, revoked) {
		t.Errorf("report = %+v; want would_delete = the 20", rep)
	}
	if n := len(f.store.ids()); n != 200 {
		t.Errorf("dry run left %d users, want 200", n)
	}
	if got := f.logged("sweep would delete a stale app password"); !slices.Equal(got, revoked) {
		t.Errorf("dry-run lines for %v", got)
	}
	f.noSecretsLogged(t)
}

// With max_failures 1 the first failed check ends the round, as the
// issue words it; the broken users come last so the rejected ones are
// reached first.
func TestRoundFirstFailureEndsTheRound(t *testing.T) {
	f := newFixture(t, 200, sweep.Config{MaxFailures: 1, Concurrency: 1})
	f.checker.set(sweep.Rejected, revoked...)
	last := []string{"u196", "u197", "u198", "u199", "u194"}
	f.checker.set(sweep.Unavailable, last...)

	rep, err := f.sweeper.Round(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != sweep.StopUnavailable || rep.Checked != 195 || rep.Unchecked != 5 {
		t.Errorf("stopped %q after %d checks (%d unchecked); want nextcloud_unavailable after 195", rep.Stopped, rep.Checked, rep.Unchecked)
	}
	want := without(revoked, []string{"u195"}) // u195 comes after u194
	if !slices.Equal(rep.Deleted, want) || !slices.Equal(keptIDs(rep), []string{"u194"}) {
		t.Errorf("deleted %v kept %v", rep.Deleted, keptIDs(rep))
	}
	if got := f.checker.checkedIDs(); slices.Contains(got, "u195") {
		t.Error("a check went out after the round ended")
	}
	if !strings.Contains(rep.StopDetail, "u194") {
		t.Errorf("stop detail %q", rep.StopDetail)
	}
}

func TestRoundOutageDeletesNothing(t *testing.T) {
	f := newFixture(t, 200, sweep.Config{Concurrency: 1})
	for _, id := range f.store.ids() {
		f.checker.set(sweep.Unavailable, id)
	}
	rep, err := f.sweeper.Round(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != sweep.StopUnavailable || rep.Checked != sweep.DefaultMaxFailures || len(rep.Deleted) != 0 {
		t.Errorf("report = %+v; want the round to stop after %d failed checks", rep, sweep.DefaultMaxFailures)
	}
	if len(f.store.ids()) != 200 {
		t.Error("an outage deleted records")
	}
	if f.logs.FilterMessage("sweep round ended").All()[0].Level.String() != "warn" {
		t.Error("an unfinished round is not logged as a warning")
	}
}

func TestRoundStopsAtThrottle(t *testing.T) {
	for _, conc := range []int{1, 4} {
		f := newFixture(t, 200, sweep.Config{Concurrency: conc})
		f.checker.set(sweep.Rejected, revoked...)
		f.checker.set(sweep.Throttled, "u100")

		rep, err := f.sweeper.Round(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Stopped != sweep.StopThrottled {
			t.Fatalf("concurrency %d: stopped %q, want nextcloud_throttled", conc, rep.Stopped)
		}
		// With one check at a time, none goes out after the 429; with
		// more, those in flight finish (how many depends on timing).
		checked := f.checker.checkedIDs()
		if n := len(checked); conc == 1 && n != 101 {
			t.Errorf("%d checks went out, want 101", n)
		}
		// Nothing wrongly deleted: only rejected users that were checked.
		for _, id := range rep.Deleted {
			if !slices.Contains(revoked, id) || !slices.Contains(checked, id) {
				t.Errorf("concurrency %d: deleted %s", conc, id)
			}
		}
		if conc == 1 && !slices.Equal(rep.Deleted, revoked[:10]) {
			t.Errorf("deleted %v, want the 10 rejected before u100", rep.Deleted)
		}
		if !slices.Equal(keptIDs(rep), []string{"u100"}) {
			t.Errorf("kept %v", keptIDs(rep))
		}
		if want := 200 - len(rep.Deleted); len(f.store.ids()) != want {
			t.Errorf("store has %d users, want %d", len(f.store.ids()), want)
		}
	}
}

func TestRoundStopsWhenNextcloudSlows(t *testing.T) {
	f := newFixture(t, 200, sweep.Config{Concurrency: 1, SlowThreshold: caddy.Duration(2 * time.Second)})
	f.checker.latency["u050"] = 2500 * time.Millisecond
	f.checker.latency["u049"] = 2 * time.Second // at the threshold: fine

	rep, err := f.sweeper.Round(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != sweep.StopSlow || rep.Checked != 51 || len(rep.Kept) != 0 {
		t.Errorf("report = %+v; want nextcloud_slow after 51 checks", rep)
	}
	if !strings.Contains(rep.StopDetail, "u050 took 2.5s") {
		t.Errorf("stop detail %q", rep.StopDetail)
	}
}

// A user re-provisioned while the round runs keeps the new password:
// whether the change lands before the round reads the record again, or
// between that read and the delete (KV v2 versions), or on KV v1 (no
// versions: the password is compared).
func TestRoundKeepsReprovisionedUser(t *testing.T) {
	cases := []struct {
		name string
		v1   bool
		when string // "check" or "delete"
	}{
		{"during the check", false, "check"},
		{"just before the delete", false, "delete"},
		{"KV v1 during the check", true, "check"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 20, sweep.Config{})
			f.store.v1 = tc.v1
			f.checker.set(sweep.Rejected, "u005", "u006")
			switch tc.when {
			case "check":
				f.checker.hook = func(_ context.Context, id string) *sweep.Verdict {
					if id == "u005" {
						f.store.reprovision(id)
					}
					return nil
				}
			case "delete":
				f.store.onDelete = func(id string) {
					if id == "u005" {
						f.store.reprovision(id)
					}
				}
			}
			rep, err := f.sweeper.Round(context.Background(), false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rep.Changed, []string{"u005"}) || !slices.Equal(rep.Deleted, []string{"u006"}) {
				t.Errorf("changed %v deleted %v; want u005 kept, u006 deleted", rep.Changed, rep.Deleted)
			}
			e, ok := f.store.entry("u005")
			if !ok || !strings.Contains(e.Password, "-v10") {
				t.Errorf("u005 is %v (present %v); want its new password kept", e, ok)
			}
			if got := f.logged("sweep kept an app password replaced during the round"); !slices.Equal(got, []string{"u005"}) {
				t.Errorf("changed lines for %v", got)
			}
		})
	}
}

func TestRoundStoreTrouble(t *testing.T) {
	t.Run("list fails", func(t *testing.T) {
		f := newFixture(t, 10, sweep.Config{})
		f.store.listErr = errors.New("vault sealed")
		rep, err := f.sweeper.Round(context.Background(), false)
		if err == nil || !strings.Contains(err.Error(), "listing users: vault sealed") || rep.Stopped != sweep.StopStoreError {
			t.Errorf("err %v, stopped %q", err, rep.Stopped)
		}
		if len(f.checker.checkedIDs()) != 0 {
			t.Error("checks went out")
		}
	})
	t.Run("a read fails", func(t *testing.T) {
		f := newFixture(t, 10, sweep.Config{Concurrency: 1})
		f.store.loadErr["u004"] = errors.New("vault: 503")
		rep, err := f.sweeper.Round(context.Background(), false)
		if err == nil || rep.Stopped != sweep.StopStoreError || rep.Checked != 4 || !slices.Equal(keptIDs(rep), []string{"u004"}) {
			t.Errorf("err %v, report %+v", err, rep)
		}
	})
	t.Run("a malformed record is kept and the round goes on", func(t *testing.T) {
		f := newFixture(t, 10, sweep.Config{})
		f.store.loadErr["u004"] = sweep.ErrUnreadable
		f.checker.set(sweep.Rejected, "u007")
		rep, err := f.sweeper.Round(context.Background(), false)
		if err != nil || !rep.Complete() || rep.Checked != 9 || !slices.Equal(keptIDs(rep), []string{"u004"}) || !slices.Equal(rep.Deleted, []string{"u007"}) {
			t.Errorf("err %v, report %+v", err, rep)
		}
	})
	t.Run("a user deleted since the listing is skipped", func(t *testing.T) {
		f := newFixture(t, 10, sweep.Config{})
		f.store.loadErr["u004"] = sweep.ErrNotFound
		rep, err := f.sweeper.Round(context.Background(), false)
		if err != nil || !rep.Complete() || rep.Checked != 9 || len(rep.Kept) != 0 {
			t.Errorf("err %v, report %+v", err, rep)
		}
	})
}

// The Vault lease's folder shows in KV LIST as "_sweep/"; it is never
// taken for a user.
func TestRoundSkipsFolders(t *testing.T) {
	f := newFixture(t, 3, sweep.Config{})
	f.store.folders = []string{sweep.LeaseFolder + "/"}
	rep, err := f.sweeper.Round(context.Background(), false)
	if err != nil || rep.Listed != 3 || rep.Checked != 3 {
		t.Errorf("err %v, report %+v", err, rep)
	}
	if f.store.loads[sweep.LeaseFolder+"/"] != 0 {
		t.Error("the lease folder was read as a user")
	}
}

func TestRoundCancelled(t *testing.T) {
	f := newFixture(t, 20, sweep.Config{})
	f.checker.set(sweep.Rejected, revoked[0], "u010")
	ctx, cancel := context.WithCancel(context.Background())
	f.checker.hook = func(ctx context.Context, id string) *sweep.Verdict {
		if id == "u010" {
			cancel()
			<-ctx.Done()
		}
		return nil
	}
	rep, err := f.sweeper.Round(ctx, false)
	if !errors.Is(err, context.Canceled) || rep.Stopped != sweep.StopCancelled {
		t.Errorf("err %v, stopped %q", err, rep.Stopped)
	}
	if _, ok := f.store.entry("u010"); !ok {
		t.Error("a check cut short by cancellation deleted its user")
	}
	if !slices.Equal(rep.Deleted, []string{"u005"}) {
		t.Errorf("deleted %v", rep.Deleted)
	}
}

func TestEntryHidesPassword(t *testing.T) {
	e := sweep.Entry{UserID: "alice", Login: "alice@example.org", Password: "Secret-pw", Version: 3}
	for _, s := range []string{fmtV(e), fmtPlusV(e), fmtSharpV(e), fmtV(&e)} {
		if strings.Contains(s, "Secret") || !strings.Contains(s, "alice@example.org") {
			t.Errorf("formatted entry %q", s)
		}
	}
}
