package sweep_test

import (
	"context"
	"slices"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep/sweeptest"
)

// Deletions go to the audit logger, and only there: the handler's audit
// trail holds every deletion, the API's and the sweep's, while the round's
// other lines stay on the sweep's logger.
func TestDeletionsGoToTheAuditLogger(t *testing.T) {
	clock := sweeptest.NewClock(t0)
	clock.SetAuto(true)
	store, checker := newFakeStore(10), newFakeChecker(clock)
	checker.set(sweep.Rejected, "u003", "u007")
	logCore, logs := observer.New(zap.DebugLevel)
	auditCore, audit := observer.New(zap.DebugLevel)
	s, err := sweep.New(sweep.Config{}, sweep.Deps{
		Store: store, Checker: checker, Clock: clock, Logger: zap.New(logCore), Audit: zap.New(auditCore),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Round(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	const msg = "sweep deleted a stale app password: nextcloud rejects it"
	var ids []string
	for _, e := range audit.All() {
		if e.Message != msg {
			t.Errorf("audit line %q", e.Message)
		}
		ids = append(ids, e.ContextMap()["user_id"].(string))
	}
	if slices.Sort(ids); !slices.Equal(ids, []string{"u003", "u007"}) {
		t.Errorf("audit lines for %v", ids)
	}
	if n := logs.FilterMessage(msg).Len(); n != 0 {
		t.Errorf("%d deletion lines on the sweep's logger", n)
	}
	if logs.FilterMessage("sweep round ended").Len() != 1 {
		t.Error("no round line on the sweep's logger")
	}
}
