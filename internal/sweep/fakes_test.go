package sweep_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep/sweeptest"
)

// t0 is where the fake clocks start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeStore keeps entries in memory, versioned like KV v2 (or not, like
// KV v1, with v1 set).
type fakeStore struct {
	mu      sync.Mutex
	recs    map[string]sweep.Entry
	v1      bool
	folders []string // listed, like "_sweep/"

	listErr error
	loadErr map[string]error
	loads   map[string]int
	// onLoad runs after the n-th Load of a user (1 = the round's read,
	// 2 = its read before deleting), outside the lock.
	onLoad func(id string, n int)
	// onDelete runs before DeleteIfUnchanged looks, outside the lock.
	onDelete func(id string)
}

func newFakeStore(n int) *fakeStore {
	s := &fakeStore{recs: map[string]sweep.Entry{}, loadErr: map[string]error{}, loads: map[string]int{}}
	for i := range n {
		id := userID(i)
		s.recs[id] = sweep.Entry{UserID: id, Login: "login-" + id, Password: password(id, 1), Version: 1}
	}
	return s
}

func userID(i int) string { return fmt.Sprintf("u%03d", i) }

// password is a user's password at a version; every one contains
// "Secret" so a test can look for any of them in the logs.
func password(id string, version int) string {
	return fmt.Sprintf("Secret-%s-v%d-0123456789abcdef", id, version)
}

func (s *fakeStore) List(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listErr != nil {
		return nil, s.listErr
	}
	ids := slices.Sorted(maps.Keys(s.recs))
	return append(ids, s.folders...), nil
}

func (s *fakeStore) Load(_ context.Context, id string) (sweep.Entry, error) {
	s.mu.Lock()
	s.loads[id]++
	n := s.loads[id]
	e, ok := s.recs[id]
	err := s.loadErr[id]
	hook := s.onLoad
	s.mu.Unlock()
	if hook != nil {
		defer hook(id, n)
	}
	if err != nil {
		return sweep.Entry{}, err
	}
	if !ok {
		return sweep.Entry{}, fmt.Errorf("%s: %w", id, sweep.ErrNotFound)
	}
	return e, nil
}

func (s *fakeStore) DeleteIfUnchanged(_ context.Context, id string, version int) error {
	if s.onDelete != nil {
		s.onDelete(id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.recs[id]
	if !ok {
		return sweep.ErrNotFound
	}
	if !s.v1 && e.Version != version {
		return sweep.ErrChanged
	}
	delete(s.recs, id)
	return nil
}

// reprovision stores a new password for id, as a POST would.
func (s *fakeStore) reprovision(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.recs[id]
	if !s.v1 {
		e.Version++
	}
	e.Password = password(id, e.Version+100)
	s.recs[id] = e
}

func (s *fakeStore) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.recs))
}

func (s *fakeStore) entry(id string) (sweep.Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.recs[id]
	return e, ok
}

// fakeChecker answers per user id: Valid unless told otherwise.
type fakeChecker struct {
	clock *sweeptest.Clock

	mu       sync.Mutex
	verdicts map[string]sweep.Verdict
	latency  map[string]time.Duration // moves the fake clock
	checked  []string
	inFlight int
	maxIn    int
	// hook runs inside the check (after the bookkeeping); a non-nil
	// verdict pointer replaces the planned one.
	hook func(ctx context.Context, id string) *sweep.Verdict
}

func newFakeChecker(clock *sweeptest.Clock) *fakeChecker {
	return &fakeChecker{clock: clock, verdicts: map[string]sweep.Verdict{}, latency: map[string]time.Duration{}}
}

func (c *fakeChecker) Check(ctx context.Context, login, pw, id string) (sweep.Verdict, error) {
	c.mu.Lock()
	c.checked = append(c.checked, id)
	c.inFlight++
	c.maxIn = max(c.maxIn, c.inFlight)
	v, planned := c.verdicts[id]
	if !planned {
		v = sweep.Valid
	}
	lat, hook := c.latency[id], c.hook
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inFlight--
		c.mu.Unlock()
	}()
	if login != "login-"+id || !strings.HasPrefix(pw, "Secret-"+id+"-") {
		return sweep.Unavailable, fmt.Errorf("checker got the wrong credentials for %s", id)
	}
	if hook != nil {
		if hv := hook(ctx, id); hv != nil {
			v = *hv
		}
	}
	if lat > 0 {
		c.clock.Advance(lat)
	}
	switch v {
	case sweep.Unavailable:
		return v, fmt.Errorf("nextcloud answered HTTP 500")
	case sweep.Throttled:
		return v, fmt.Errorf("nextcloud answered HTTP 429")
	}
	return v, nil
}

func (c *fakeChecker) set(v sweep.Verdict, ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.verdicts[id] = v
	}
}

func (c *fakeChecker) checkedIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.checked)
}

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu      sync.Mutex
	started int
	checked map[sweep.Verdict]int
	reports []sweep.Report
}

func newRecorder() *recorder { return &recorder{checked: map[sweep.Verdict]int{}} }

func (r *recorder) RoundStarted(bool) {
	r.mu.Lock()
	r.started++
	r.mu.Unlock()
}

func (r *recorder) Checked(v sweep.Verdict, _ time.Duration) {
	r.mu.Lock()
	r.checked[v]++
	r.mu.Unlock()
}

func (r *recorder) RoundEnded(rep sweep.Report) {
	r.mu.Lock()
	r.reports = append(r.reports, rep)
	r.mu.Unlock()
}

func (r *recorder) rounds() []sweep.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reports)
}

// fixture is a sweeper over fakes.
type fixture struct {
	clock   *sweeptest.Clock
	store   *fakeStore
	checker *fakeChecker
	obs     *recorder
	logs    *observer.ObservedLogs
	sweeper *sweep.Sweeper
}

// newFixture builds a sweeper over n users; the clock runs in auto mode.
// With more than one check in flight, a check's latency on that clock
// also counts the rate waits of the checks started meanwhile, so the
// slow threshold is an hour unless the test sets it.
func newFixture(t *testing.T, n int, cfg sweep.Config) *fixture {
	t.Helper()
	if cfg.SlowThreshold == 0 {
		cfg.SlowThreshold = caddy.Duration(time.Hour)
	}
	f := &fixture{clock: sweeptest.NewClock(t0), store: newFakeStore(n), obs: newRecorder()}
	f.clock.SetAuto(true)
	f.checker = newFakeChecker(f.clock)
	core, logs := observer.New(zap.DebugLevel)
	f.logs = logs
	var err error
	f.sweeper, err = sweep.New(cfg, sweep.Deps{
		Store: f.store, Checker: f.checker, Clock: f.clock, Logger: zap.New(core), Observer: f.obs, Holder: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// noSecretsLogged fails when any log line holds a stored password.
func (f *fixture) noSecretsLogged(t *testing.T) {
	t.Helper()
	for _, e := range f.logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		if strings.Contains(line, "Secret-") {
			t.Errorf("a log line shows a password: %s", line)
		}
	}
}

// logged returns the user_id of each log line with message msg.
func (f *fixture) logged(msg string) []string {
	var ids []string
	for _, e := range f.logs.FilterMessage(msg).All() {
		ids = append(ids, fmt.Sprint(e.ContextMap()["user_id"]))
	}
	slices.Sort(ids)
	return ids
}
