package sweep

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Round runs one round now, without the lease: `caddy app-password sweep`
// (an operator's explicit request; with dryRun it changes nothing) and
// tests. LeasedRound is the one that coordinates with other replicas.
//
// The round lists the users, then for each one, at most Rate per second
// and Concurrency at a time: reads the record, checks its password, and
// when Nextcloud definitively rejects it, reads the record again and
// deletes it only if it is still the one checked (same version, same
// password: a user who re-provisioned meanwhile keeps the new password).
// It stops early at a 429, a check slower than SlowThreshold,
// MaxFailures failed checks in a row, a store error, or ctx's end;
// checks already in flight finish and count.
//
// The error is non-nil when the store failed, the lease was lost, or ctx
// ended; the report then says how far the round got. Nextcloud's
// troubles are not errors of the round: they are in Report.Stopped.
func (s *Sweeper) Round(ctx context.Context, dryRun bool) (Report, error) {
	return s.round(ctx, dryRun, nil)
}

// round is one round's shared state; its checks run on several
// goroutines.
type round struct {
	s      *Sweeper
	dryRun bool

	stopped chan struct{} // closed by the first stop

	mu       sync.Mutex
	rep      Report
	failures int // failed checks in a row
	err      error
}

func (s *Sweeper) round(ctx context.Context, dryRun bool, renew func(context.Context) error) (Report, error) {
	r := &round{s: s, dryRun: dryRun, stopped: make(chan struct{})}
	r.rep.DryRun = dryRun
	r.rep.Started = s.clock.Now()
	s.observer.RoundStarted(dryRun)
	s.logger.Info("sweep round started", zap.Bool("dry_run", dryRun))

	listed, err := s.store.List(ctx)
	if err != nil {
		r.fail(ctx, fmt.Errorf("listing users: %w", err))
		return r.finish()
	}
	// A folder ("_sweep/", where the Vault lease lives) is never a user.
	ids := slices.DeleteFunc(slices.Clone(listed), func(id string) bool { return strings.Contains(id, "/") })
	r.rep.Listed = len(ids)

	// Burst 1: the first check goes at once, each next one 1/Rate later.
	lim := rate.NewLimiter(rate.Limit(s.cfg.Rate), 1)
	slots := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	dispatched := 0
	for _, id := range ids {
		// A free slot first, then the rate's turn: a turn taken while
		// waiting for a slot would let checks bunch up.
		if !r.await(ctx, slots) {
			break
		}
		if !r.waitTurn(ctx, lim) || !r.renew(ctx, renew) || r.isStopped() {
			<-slots
			break
		}
		dispatched++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			r.sweepUser(ctx, id)
		}()
	}
	wg.Wait()
	r.rep.Unchecked = len(ids) - dispatched
	return r.finish()
}

// await takes a check slot, unless the round stops or ctx ends first.
func (r *round) await(ctx context.Context, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	case <-r.stopped:
		return false
	case <-ctx.Done():
		r.fail(ctx, ctx.Err())
		return false
	}
}

// waitTurn waits, on the sweeper's clock, until the rate allows the next
// check.
func (r *round) waitTurn(ctx context.Context, lim *rate.Limiter) bool {
	now := r.s.clock.Now()
	d := lim.ReserveN(now, 1).DelayFrom(now)
	if d <= 0 {
		return true
	}
	c, stopTimer := r.s.clock.NewTimer(d)
	select {
	case <-c:
		return true
	case <-r.stopped:
		stopTimer()
		return false
	case <-ctx.Done():
		stopTimer()
		r.fail(ctx, ctx.Err())
		return false
	}
}

// renew keeps the lease through a long round.
func (r *round) renew(ctx context.Context, renew func(context.Context) error) bool {
	if renew == nil {
		return true
	}
	if err := renew(ctx); err != nil {
		if ctx.Err() != nil {
			r.fail(ctx, ctx.Err())
		} else {
			r.stop(StopLeaseLost, err.Error(), err)
		}
		return false
	}
	return true
}

// sweepUser checks one user and acts on the verdict.
func (r *round) sweepUser(ctx context.Context, id string) {
	s := r.s
	// A record deleted since the listing has nothing to sweep.
	e, ok := r.load(ctx, id, "reading the record", func(err error) { r.keep(id, err.Error()) })
	if !ok {
		return
	}

	start := s.clock.Now()
	v, cerr := s.checker.Check(ctx, e.Login, e.Password, e.UserID)
	latency := s.clock.Now().Sub(start)
	if ctx.Err() != nil {
		// Cancelled mid-check: the verdict proves nothing.
		r.fail(ctx, ctx.Err())
		return
	}
	s.observer.Checked(v, latency)
	failures := r.count(v)
	reason := v.String()
	if cerr != nil {
		reason = cerr.Error()
	}

	switch v {
	case Valid:
	case Rejected:
		r.remove(ctx, e)
	case Throttled:
		r.keep(id, "nextcloud throttled the check: "+reason)
		r.stop(StopThrottled, "nextcloud answered 429 for "+id, nil)
	default:
		r.keep(id, "nextcloud check failed: "+reason)
		if failures >= s.cfg.MaxFailures {
			r.stop(StopUnavailable, fmt.Sprintf("%d checks in a row failed, the last for %s: %s", failures, id, reason), nil)
		}
	}
	if slow := time.Duration(s.cfg.SlowThreshold); latency > slow {
		r.stop(StopSlow, fmt.Sprintf("the check for %s took %s, past %s", id, latency, slow), nil)
	}
}

// load reads id's record for the round. It reports false when the caller
// has nothing more to do with the user: the record is gone, it is
// unreadable (unreadable was called), or the store failed or the round was
// cancelled (the round ends; what says what was being read).
func (r *round) load(ctx context.Context, id, what string, unreadable func(error)) (Entry, bool) {
	e, err := r.s.store.Load(ctx, id)
	switch {
	case err == nil:
		return e, true
	case ctx.Err() != nil:
		r.fail(ctx, ctx.Err())
	case errors.Is(err, ErrNotFound):
	case errors.Is(err, ErrUnreadable):
		unreadable(err)
	default:
		r.keep(id, what+": "+err.Error())
		r.fail(ctx, fmt.Errorf("reading %q: %w", id, err))
	}
	return Entry{}, false
}

// remove deletes a user whose password Nextcloud rejected, if the record
// is still the one that was checked.
func (r *round) remove(ctx context.Context, checked Entry) {
	s, id := r.s, checked.UserID
	if r.dryRun {
		r.mu.Lock()
		r.rep.WouldDelete = append(r.rep.WouldDelete, id)
		r.mu.Unlock()
		s.logger.Info("sweep would delete a stale app password", zap.String("user_id", id), zap.String("login", checked.Login))
		return
	}

	// Read again: the check took a while, and a user may have
	// re-provisioned meanwhile (on KV v1, with no versions, this is the
	// only guard). The password is compared in constant time, like
	// every secret.
	// Gone meanwhile (by its owner or another sweep): nothing to do; no
	// longer readable as a record: it changed.
	cur, ok := r.load(ctx, id, "reading the record again", func(error) { r.changed(id) })
	if !ok {
		return
	}
	if cur.Version != checked.Version || subtle.ConstantTimeCompare([]byte(cur.Password), []byte(checked.Password)) != 1 {
		r.changed(id)
		return
	}

	err := s.store.DeleteIfUnchanged(ctx, id, checked.Version)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		r.fail(ctx, ctx.Err())
		return
	case errors.Is(err, ErrChanged):
		r.changed(id)
		return
	case errors.Is(err, ErrNotFound):
		return
	default:
		r.keep(id, "deleting the record: "+err.Error())
		r.fail(ctx, fmt.Errorf("deleting %q: %w", id, err))
		return
	}
	r.mu.Lock()
	r.rep.Deleted = append(r.rep.Deleted, id)
	r.mu.Unlock()
	s.audit.Info("sweep deleted a stale app password: nextcloud rejects it",
		zap.String("user_id", id), zap.String("login", checked.Login), zap.Int("version", checked.Version))
}

// count records a verdict and returns the failed checks in a row.
func (r *round) count(v Verdict) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Checked++
	switch v {
	case Valid:
		r.rep.Valid++
		r.failures = 0
	case Rejected:
		r.rep.Rejected++
		r.failures = 0
	default:
		r.failures++
	}
	return r.failures
}

func (r *round) keep(id, reason string) {
	r.mu.Lock()
	r.rep.Kept = append(r.rep.Kept, Kept{UserID: id, Reason: reason})
	r.mu.Unlock()
	r.s.logger.Warn("sweep kept an app password it could not check", zap.String("user_id", id), zap.String("reason", reason))
}

func (r *round) changed(id string) {
	r.mu.Lock()
	r.rep.Changed = append(r.rep.Changed, id)
	r.mu.Unlock()
	r.s.logger.Info("sweep kept an app password replaced during the round", zap.String("user_id", id))
}

// fail stops the round for an error of ours: ctx's end or the store's.
func (r *round) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		r.stop(StopCancelled, ctx.Err().Error(), ctx.Err())
		return
	}
	r.stop(StopStoreError, err.Error(), err)
}

// stop ends the round; the first reason stays.
func (r *round) stop(reason StopReason, detail string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rep.Stopped != StopNone {
		return
	}
	r.rep.Stopped, r.rep.StopDetail, r.err = reason, detail, err
	close(r.stopped)
}

func (r *round) isStopped() bool {
	select {
	case <-r.stopped:
		return true
	default:
		return false
	}
}

// finish dates, sorts, reports and logs the round.
func (r *round) finish() (Report, error) {
	s := r.s
	r.mu.Lock()
	rep, err := r.rep, r.err
	r.mu.Unlock()
	rep.Ended = s.clock.Now()
	slices.Sort(rep.Deleted)
	slices.Sort(rep.WouldDelete)
	slices.Sort(rep.Changed)
	slices.SortFunc(rep.Kept, func(a, b Kept) int { return strings.Compare(a.UserID, b.UserID) })
	s.observer.RoundEnded(rep)

	level := zap.InfoLevel
	if rep.Stopped != StopNone && rep.Stopped != StopCancelled {
		level = zap.WarnLevel
	}
	s.logger.Log(level, "sweep round ended",
		zap.Bool("dry_run", rep.DryRun),
		zap.Int("listed", rep.Listed),
		zap.Int("checked", rep.Checked),
		zap.Int("deleted", len(rep.Deleted)),
		zap.Int("would_delete", len(rep.WouldDelete)),
		zap.Int("changed", len(rep.Changed)),
		zap.Int("kept_on_error", len(rep.Kept)),
		zap.Int("unchecked", rep.Unchecked),
		zap.String("stopped", string(rep.Stopped)),
		zap.String("stop_detail", rep.StopDetail),
		zap.Duration("duration", rep.Ended.Sub(rep.Started)))
	return rep, err
}
