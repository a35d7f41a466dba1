// Package sweep removes stale app passwords: stored secrets whose password
// Nextcloud no longer accepts (revoked in Nextcloud's security settings,
// or their user deleted, which never sends a DELETE).
//
// A Sweeper runs a round every interval (with jitter), on one replica at a
// time thanks to a Lease (Redis or a Vault record). A round checks each
// stored password at a bounded rate and deletes a record only on a
// definitive rejection, and only if the record is still the one it
// checked. An outage deletes nothing.
//
// The package knows neither Caddy's HTTP server nor the handler: the
// handler hands it a Store (its Vault store), a Checker (its Nextcloud
// client), a Lease and an Observer (its metrics), starts it in Provision
// and stops it in Cleanup.
package sweep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// leaseTimeout bounds each call to the lease store; the lease is worth
// waiting for only so long.
const leaseTimeout = 10 * time.Second

// Deps are what a Sweeper works with.
type Deps struct {
	Store   Store   // required
	Checker Checker // required
	// Lease coordinates replicas; nil runs every round (one replica).
	Lease Lease
	// Holder names this sweeper in the lease (default: host name and a
	// random suffix, so each Sweeper, even after a reload, is its own
	// holder: a new one waits for the old one's lease to expire).
	Holder string
	Clock  Clock       // default: the wall clock
	Logger *zap.Logger // rounds, kept and would-be deletions; default: none
	// Audit gets the line of each deletion (default: Logger): the
	// handler's audit trail, beside the API's deletions.
	Audit    *zap.Logger
	Observer Observer // metrics; default: none
	// Rand returns a number in [0, 1) for the jitter (default
	// math/rand/v2).
	Rand func() float64
}

// Sweeper runs rounds on a schedule. Its methods are safe to call from
// several goroutines.
type Sweeper struct {
	cfg      Config
	store    Store
	checker  Checker
	lease    Lease
	holder   string
	clock    Clock
	logger   *zap.Logger
	audit    *zap.Logger
	observer Observer
	rand     func() float64

	mu     sync.Mutex
	cancel context.CancelFunc // of the running loop
	done   chan struct{}      // closed when the loop has returned
}

// New makes a Sweeper of cfg (defaults filled in) and deps. It does no
// I/O, so Caddy's Provision can call it while Nextcloud or Vault is down.
func New(cfg Config, deps Deps) (*Sweeper, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Checker == nil {
		return nil, errors.New("sweep: a store and a checker are required")
	}
	s := &Sweeper{
		cfg: cfg, store: deps.Store, checker: deps.Checker, lease: deps.Lease,
		holder: deps.Holder, clock: deps.Clock, logger: deps.Logger, audit: deps.Audit, observer: deps.Observer, rand: deps.Rand,
	}
	if s.holder == "" {
		s.holder = defaultHolder()
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	if s.audit == nil {
		s.audit = s.logger
	}
	if s.observer == nil {
		s.observer = nopObserver{}
	}
	if s.rand == nil {
		s.rand = mrand.Float64
	}
	return s, nil
}

func defaultHolder() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s", host, hex.EncodeToString(b))
}

// Holder is this sweeper's name in the lease.
func (s *Sweeper) Holder() string { return s.holder }

// Start runs the schedule in a goroutine until Stop: the first attempt
// within the first tenth of an interval (so a fleet started together
// spreads out, and a Caddy restarted more often than the interval still
// gets its turn once its predecessor's lease has expired), then one every
// interval ±10 % after the previous attempt ended. Each attempt takes the
// lease and, if it got it, runs a round. With Off, Start does nothing. A
// second Start while running does nothing.
func (s *Sweeper) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Off || s.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.run(ctx, s.done)
}

// Stop ends the schedule and waits for its goroutine to return. A round
// in progress is cancelled (checks in flight end with their context) and
// gives its lease back, so another replica can sweep without waiting for
// the expiry.
func (s *Sweeper) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (s *Sweeper) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	interval := time.Duration(s.cfg.Interval)
	wait := time.Duration(s.rand() * float64(interval) / 10)
	for {
		c, stopTimer := s.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			stopTimer()
			return
		case <-c:
		}
		if _, _, err := s.LeasedRound(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error("sweep round failed", zap.Error(err))
		}
		wait = time.Duration(float64(interval) * (0.9 + 0.2*s.rand()))
	}
}

// LeasedRound takes the lease and runs a round (never a dry run: a dry
// run must not use up the interval's round). It reports false when
// another holder has the lease. The lease's time to live is the
// interval: this replica's own next attempt extends it, another
// replica's attempt within the interval finds it held, and a round that
// outlasts half of it renews it as it goes (so a round over many users
// never overlaps another replica's). The error is the lease store's, or
// Round's.
func (s *Sweeper) LeasedRound(ctx context.Context) (Report, bool, error) {
	if s.lease == nil {
		rep, err := s.round(ctx, false, nil)
		return rep, true, err
	}
	ttl := time.Duration(s.cfg.Interval)
	now := s.clock.Now()
	lctx, cancel := context.WithTimeout(ctx, leaseTimeout)
	ok, err := s.lease.Acquire(lctx, s.holder, now, ttl)
	cancel()
	if err != nil {
		return Report{}, false, fmt.Errorf("taking the sweep lease: %w", err)
	}
	if !ok {
		s.logger.Debug("sweep skipped: another replica holds the lease")
		return Report{}, false, nil
	}

	expires, renewAt := now.Add(ttl), now.Add(ttl/2)
	renew := func(ctx context.Context) error {
		now := s.clock.Now()
		if now.Before(renewAt) {
			return nil
		}
		lctx, cancel := context.WithTimeout(ctx, leaseTimeout)
		ok, err := s.lease.Acquire(lctx, s.holder, now, ttl)
		cancel()
		switch {
		case err == nil && ok:
			expires, renewAt = now.Add(ttl), now.Add(ttl/2)
			return nil
		case err == nil:
			return errors.New("another replica took the sweep lease")
		case ctx.Err() != nil:
			return ctx.Err()
		case now.Before(expires):
			// Still ours for a while: try again at the next check.
			s.logger.Warn("sweep could not renew its lease yet", zap.Error(err))
			return nil
		default:
			return fmt.Errorf("renewing the sweep lease: %w", err)
		}
	}
	rep, err := s.round(ctx, false, renew)
	if rep.Stopped == StopCancelled {
		// Caddy stops or reloads: the round is unfinished, let another
		// replica (or this one's successor) take over now.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseTimeout)
		if rerr := s.lease.Release(rctx, s.holder); rerr != nil {
			s.logger.Warn("sweep could not give its lease back; it expires on its own", zap.Error(rerr))
		}
		cancel()
	}
	return rep, true, err
}
