package sweep

import (
	"context"
	"errors"
	"fmt"
)

// Store is the secrets store the sweep reads and prunes. The handler
// implements it over its Vault KV store.
type Store interface {
	// List returns the stored user ids. KV LIST also shows folders,
	// with a trailing "/" (the Vault lease lives in one, see
	// VaultLeasePath); they are never user ids, since a user id has no
	// "/", and List leaves them out (the round skips any that remain).
	List(ctx context.Context) ([]string, error)

	// Load returns a user's entry; an error wrapping ErrNotFound when it
	// is gone (deleted since the listing), one wrapping ErrUnreadable
	// when it cannot be checked (a malformed record), any other error
	// when the store failed.
	Load(ctx context.Context, userID string) (Entry, error)

	// DeleteIfUnchanged deletes the user's record only while the stored
	// version is still version, and otherwise returns an error wrapping
	// ErrChanged; ErrNotFound when it is gone. KV v1 has no versions:
	// the handler's store stands a fingerprint of the record in for one
	// and compares it under the user's lock (see vaultkv), and the
	// round's re-read just before is a second guard.
	//
	// Vault has no conditional delete: a KV v2 store reads the
	// metadata's current_version and then deletes the metadata, which
	// leaves a window of one round trip for a re-provisioning to land
	// in between.
	DeleteIfUnchanged(ctx context.Context, userID string, version int) error
}

// Entry is what the sweep needs of a stored record.
type Entry struct {
	UserID string
	// Login is the name the password is checked as: the stored
	// username, or the user id when none was stored.
	Login    string
	Password string
	// Version is the KV v2 version the entry was read at; on KV v1 the
	// store's fingerprint of the record (vaultkv.Record.Version).
	Version int
}

// String leaves the password out, so an Entry in a log line or an error
// (%v, %+v) never shows it.
func (e Entry) String() string {
	return fmt.Sprintf("{UserID:%s Login:%s Version:%d}", e.UserID, e.Login, e.Version)
}

// GoString is String for %#v.
func (e Entry) GoString() string { return "sweep.Entry" + e.String() }

// Errors a Store wraps.
var (
	ErrNotFound   = errors.New("no stored record")
	ErrUnreadable = errors.New("stored record cannot be checked")
	ErrChanged    = errors.New("stored record changed since it was read")
)

// Checker checks a stored password against Nextcloud (OCS v2, as login).
type Checker interface {
	// Check returns Nextcloud's verdict on login and password. For a
	// verdict other than Valid and Rejected, the error says why, in
	// words fit for a log line: never the password, never a URL with
	// credentials.
	Check(ctx context.Context, login, password, userID string) (Verdict, error)
}

// Verdict is the outcome of one check.
type Verdict int

// The zero Verdict is Unavailable, so a check that forgot to set one
// never deletes.
const (
	// Unavailable: no answer that proves anything (timeout, 5xx,
	// maintenance mode, a redirect, a body that is not OCS). Nothing is
	// deleted.
	Unavailable Verdict = iota
	// Valid: Nextcloud accepts the password.
	Valid
	// Rejected: Nextcloud definitively refuses it (HTTP 401, or OCS
	// status 997). The only verdict that deletes.
	Rejected
	// Throttled: Nextcloud answered 429. The round ends at once.
	Throttled
)

func (v Verdict) String() string {
	switch v {
	case Valid:
		return "valid"
	case Rejected:
		return "rejected"
	case Throttled:
		return "throttled"
	default:
		return "unavailable"
	}
}
