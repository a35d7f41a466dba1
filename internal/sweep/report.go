package sweep

import "time"

// Report is what one round did.
type Report struct {
	DryRun  bool      `json:"dry_run"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`

	// Listed is how many user ids the store listed.
	Listed int `json:"listed"`
	// Checked is how many passwords Nextcloud was asked about, and
	// Valid and Rejected how many of those it accepted and refused.
	Checked  int `json:"checked"`
	Valid    int `json:"valid"`
	Rejected int `json:"rejected"`
	// Unchecked is how many listed users the round did not reach
	// because it stopped early.
	Unchecked int `json:"unchecked"`

	// Deleted are the users whose record the round deleted; in a dry
	// run, WouldDelete are those it would have deleted.
	Deleted     []string `json:"deleted,omitempty"`
	WouldDelete []string `json:"would_delete,omitempty"`
	// Changed are users Nextcloud rejected whose record was replaced
	// (re-provisioned) while the round ran: the new password is kept.
	Changed []string `json:"changed,omitempty"`
	// Kept are users kept because their check or their record failed.
	Kept []Kept `json:"kept,omitempty"`

	// Stopped says why the round ended before checking every listed
	// user; StopNone when it did not. StopDetail is the cause in words.
	Stopped    StopReason `json:"stopped,omitempty"`
	StopDetail string     `json:"stop_detail,omitempty"`
}

// Kept is a user whose record stays because nothing was proved.
type Kept struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

// Complete reports whether the round checked every listed user.
func (r Report) Complete() bool { return r.Stopped == StopNone }

// StopReason says why a round ended early. The values are short enough
// for a metric label.
type StopReason string

const (
	StopNone StopReason = ""
	// StopUnavailable: MaxFailures checks in a row failed.
	StopUnavailable StopReason = "nextcloud_unavailable"
	// StopThrottled: Nextcloud answered 429.
	StopThrottled StopReason = "nextcloud_throttled"
	// StopSlow: a check took longer than SlowThreshold.
	StopSlow StopReason = "nextcloud_slow"
	// StopStoreError: the store failed to list, read or delete.
	StopStoreError StopReason = "store_error"
	// StopLeaseLost: another replica holds the lease now (ours expired
	// mid-round and could not be renewed).
	StopLeaseLost StopReason = "lease_lost"
	// StopCancelled: the round's context ended (Caddy stopped or
	// reloaded, or the operator pressed Ctrl-C).
	StopCancelled StopReason = "cancelled"
)

// Observer is told what the sweep does, for metrics. Audit lines go to
// the sweeper's logger. Calls come from the round's goroutines, so an
// Observer must be safe for concurrent use (Prometheus collectors are).
type Observer interface {
	// RoundStarted is called when a round starts (after the lease was
	// taken).
	RoundStarted(dryRun bool)
	// Checked is called after each check, with its latency.
	Checked(v Verdict, latency time.Duration)
	// RoundEnded is called with the round's report; deleted, kept,
	// the stop reason and the last round's time are in it.
	RoundEnded(r Report)
}

type nopObserver struct{}

func (nopObserver) RoundStarted(bool)              {}
func (nopObserver) Checked(Verdict, time.Duration) {}
func (nopObserver) RoundEnded(Report)              {}
