package redelivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-apppw/caddy-apppw/internal/mcpserver"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// WorkerStore is the Store a Worker scans and cleans up.
type WorkerStore interface {
	Store
	// List returns the stored user ids.
	List(ctx context.Context) ([]string, error)
	// DeleteIfUnchanged removes the record while it is still at version.
	DeleteIfUnchanged(ctx context.Context, userID string, version int) error
}

// Deliver hands the change a record owes (rec.MCPPending) to the MCP
// server, as a request built from the record alone: its password, login
// name and scopes.
type Deliver func(ctx context.Context, rec *vaultkv.Record) mcpserver.Outcome

// Observer is told what a Worker does: the handler's metrics.
type Observer interface {
	// Redelivered counts one re-delivery by its result: accepted,
	// refused, throttled, unreachable, given_up, or storage_error.
	Redelivered(result string)
	// Pending ends a round: the number of records that owed the MCP
	// server a change at its end.
	Pending(n int)
	// Standby says another replica holds the lease: this process's
	// count of pending changes is no longer current.
	Standby()
}

type nopObserver struct{}

func (nopObserver) Redelivered(string) {}
func (nopObserver) Pending(int)        {}
func (nopObserver) Standby()           {}

// Deps are what a Worker works with.
type Deps struct {
	Store   WorkerStore // required
	Deliver Deliver     // required
	// Lease lets one replica at a time run the rounds; nil runs every
	// round (one replica).
	Lease  sweep.Lease
	Holder string      // default: host name and a random suffix
	Logger *zap.Logger // one line per re-delivery; default: none
	// Audit gets the line of each deletion finished in the background.
	Audit    *zap.Logger
	Observer Observer         // default: none
	Now      func() time.Time // default: time.Now
	// Timeout bounds one delivery (default 15s).
	Timeout time.Duration
}

// Worker re-delivers, every interval, what the records in Vault still owe
// the MCP server. Its methods are safe to call from several goroutines.
type Worker struct {
	interval, giveUp time.Duration
	deps             Deps

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	// notBefore holds, per user, when the MCP server asked to be called
	// again (its 429's Retry-After). It lives with the Worker: after a
	// reload the first try comes early, and the MCP server says 429
	// again.
	notBefore map[string]time.Time
	kick      chan struct{}
}

// New makes a Worker that runs a round every interval and, for a
// deletion the MCP server has not taken for giveUp, deletes the record
// from Vault all the same (a password the user removed is kept no
// longer than that).
func New(interval, giveUp time.Duration, deps Deps) (*Worker, error) {
	if deps.Store == nil || deps.Deliver == nil {
		return nil, errors.New("redelivery: a store and a deliver function are required")
	}
	if interval <= 0 || giveUp <= 0 {
		return nil, errors.New("redelivery: interval and give_up must be positive")
	}
	if deps.Holder == "" {
		deps.Holder = DefaultHolder()
	}
	if deps.Logger == nil {
		deps.Logger = zap.NewNop()
	}
	if deps.Audit == nil {
		deps.Audit = deps.Logger
	}
	if deps.Observer == nil {
		deps.Observer = nopObserver{}
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Timeout <= 0 {
		deps.Timeout = 15 * time.Second
	}
	return &Worker{interval: interval, giveUp: giveUp, deps: deps, notBefore: map[string]time.Time{}, kick: make(chan struct{}, 1)}, nil
}

// DefaultHolder is a holder name for the lease: the host name and a
// random suffix.
func DefaultHolder() string {
	host, _ := os.Hostname()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return host + "/" + hex.EncodeToString(b)
}

// Start runs the rounds in the background: the first at once (a restart
// picks up what the last run left), then every interval. Calling it
// twice starts one loop.
func (w *Worker) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go w.run(ctx, w.done)
}

// Kick asks for a round soon, without waiting for the interval: the
// handler kicks after it marked a record, so a short outage heals in
// seconds. Rounds still need the lease.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Stop ends the loop and waits for it; a round in progress is cancelled,
// and the lease is given back so another replica can take over at once.
func (w *Worker) Stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.cancel, w.done = nil, nil
	w.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	if w.deps.Lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.deps.Lease.Release(ctx, w.deps.Holder)
	}
}

func (w *Worker) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		if _, err := w.LeasedRound(ctx); err != nil && ctx.Err() == nil {
			w.deps.Logger.Error("re-delivery round failed", zap.Error(err))
		}
		t := time.NewTimer(w.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-w.kick:
			t.Stop()
		}
	}
}

// LeasedRound runs a round if this worker holds (or can take) the lease.
// It returns the number of records still owing a change, -1 when another
// replica holds the lease.
func (w *Worker) LeasedRound(ctx context.Context) (int, error) {
	if l := w.deps.Lease; l != nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		held, err := l.Acquire(lctx, w.deps.Holder, w.deps.Now(), 3*w.interval)
		cancel()
		if err != nil {
			return -1, err
		}
		if !held {
			w.deps.Observer.Standby()
			return -1, nil
		}
	}
	return w.Round(ctx)
}

// Round scans the store once and re-delivers every change owed whose
// time has come. It returns how many records still owe one.
func (w *Worker) Round(ctx context.Context) (int, error) {
	ids, err := w.deps.Store.List(ctx)
	if err != nil {
		return 0, err
	}
	pending := 0
	for _, id := range ids {
		owes, err := w.visit(ctx, id)
		if err != nil {
			return pending, err
		}
		if owes {
			pending++
		}
	}
	w.deps.Observer.Pending(pending)
	return pending, nil
}

// visit reads one user's record and re-delivers what it owes, under the
// user's lock, and reports whether it still owes a change.
func (w *Worker) visit(ctx context.Context, id string) (bool, error) {
	unlock, err := Lock(ctx, id)
	if err != nil {
		return false, err
	}
	defer unlock()
	rec, err := w.deps.Store.Load(ctx, id)
	switch {
	case errors.Is(err, vaultkv.ErrNotFound) || errors.Is(err, vaultkv.ErrMalformed):
		return false, nil
	case err != nil:
		return false, err
	case rec.MCPPending == vaultkv.PendingNone:
		return false, nil
	}
	return !w.redeliver(ctx, rec), nil
}

// redeliver delivers what rec owes and reports whether the MCP server
// now holds what Vault holds (or the change was given up).
func (w *Worker) redeliver(ctx context.Context, rec *vaultkv.Record) bool {
	now := w.deps.Now()
	w.mu.Lock()
	wait := w.notBefore[rec.UserID]
	w.mu.Unlock()
	if now.Before(wait) {
		return false
	}
	age := now.Sub(time.Unix(rec.MCPPendingSince, 0))
	dctx, cancel := context.WithTimeout(ctx, w.deps.Timeout)
	out := w.deps.Deliver(dctx, rec)
	cancel()

	result, settled := w.settle(ctx, rec, out, age)
	w.mu.Lock()
	if out.Kind == mcpserver.Refused && out.Status == http.StatusTooManyRequests && !settled {
		w.notBefore[rec.UserID] = now.Add(max(out.RetryAfter, time.Second))
	} else {
		delete(w.notBefore, rec.UserID)
	}
	w.mu.Unlock()
	w.deps.Observer.Redelivered(result)

	fields := []zap.Field{
		zap.String("user_id", rec.UserID),
		zap.String("change", string(rec.MCPPending)),
		zap.String("result", result),
		zap.String("mcp_outcome", out.Kind.String()),
		zap.Int("mcp_status", out.Status),
		zap.String("mcp_text", out.Text),
		zap.Duration("pending_for", age.Round(time.Second)),
	}
	switch result {
	case "accepted":
		w.deps.Logger.Info("re-delivered to the MCP server", fields...)
	case "throttled", "unreachable":
		w.deps.Logger.Warn("re-delivery to the MCP server failed; trying again", fields...)
	default:
		w.deps.Logger.Error("re-delivery to the MCP server ended without the MCP server's copy following Vault", fields...)
	}
	return settled
}

// settle turns the outcome of one re-delivery into the record's new
// state, and names the result.
func (w *Worker) settle(ctx context.Context, rec *vaultkv.Record, out mcpserver.Outcome, age time.Duration) (string, bool) {
	s := w.deps.Store
	throttled := out.Kind == mcpserver.Refused && out.Status == http.StatusTooManyRequests
	retry := out.Kind == mcpserver.Unreachable || throttled
	result := "accepted"
	switch {
	case throttled:
		result = "throttled"
	case out.Kind == mcpserver.Unreachable:
		result = "unreachable"
	case out.Kind == mcpserver.Refused:
		result = "refused"
	}

	if rec.Removed() {
		// A deletion: the record goes once the MCP server deleted its
		// copy, refused to (its 401: Nextcloud no longer takes the
		// password, so the MCP server drops it at its own next check;
		// any other refusal is not retried), or once give_up passed.
		if retry && age < w.giveUp {
			return result, false
		}
		if retry {
			result = "given_up"
		}
		err := s.DeleteIfUnchanged(ctx, rec.UserID, rec.Version)
		switch {
		case err == nil, errors.Is(err, vaultkv.ErrNotFound):
			w.deps.Audit.Info("deletion", zap.String("user_id", rec.UserID), zap.String("outcome", "deleted_after_redelivery"), zap.String("result", result))
			return result, true
		case errors.Is(err, vaultkv.ErrConflict):
			return result, true // re-provisioned meanwhile: that record owes its own change
		}
		w.deps.Logger.Error("re-delivery: deleting the record from Vault failed", zap.String("user_id", rec.UserID), zap.Error(err))
		return "storage_error", false
	}

	if retry {
		return result, false
	}
	// Accepted, or refused for good (a 4xx the MCP server will answer
	// again): either way this change is not delivered again.
	var err error
	if out.Kind == mcpserver.Accepted {
		err = Settle(ctx, s, rec.UserID, rec.Version, rec.MCPPending, w.deps.Now())
	} else {
		err = clear(ctx, s, rec)
	}
	if err != nil {
		w.deps.Logger.Error("re-delivery: updating the record in Vault failed", zap.String("user_id", rec.UserID), zap.Error(err))
		return "storage_error", false
	}
	return result, true
}

// clear drops rec's mark if rec is still the stored record.
func clear(ctx context.Context, s Store, rec *vaultkv.Record) error {
	upd := *rec
	upd.MCPPending, upd.MCPPendingSince = vaultkv.PendingNone, 0
	if err := s.Save(ctx, &upd); err != nil && !errors.Is(err, vaultkv.ErrConflict) {
		return err
	}
	return nil
}
