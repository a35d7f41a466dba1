package redelivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// Store is what marking and re-delivering need of the secrets store: the
// handler's Vault store (or the tests' memory store for Mark and Settle).
type Store interface {
	Load(ctx context.Context, userID string) (*vaultkv.Record, error)
	// Save writes rec over the version it was loaded at (check-and-set)
	// and sets rec.Version to the version written.
	Save(ctx context.Context, rec *vaultkv.Record) error
}

// maxTries bounds the check-and-set loops below: each lost round means
// another writer for the same user succeeded, and the rate limit keeps
// those few.
const maxTries = 16

// rank orders the pending changes: a later one supersedes an earlier one
// of lower or equal rank. A provisioning delivers the whole record, so it
// covers a scope change; a deletion covers both. A provisioning after a
// deletion replaces the record, and its own mark starts afresh.
func rank(p vaultkv.Pending) int {
	switch p {
	case vaultkv.PendingPatch:
		return 1
	case vaultkv.PendingPost:
		return 2
	case vaultkv.PendingDelete:
		return 3
	}
	return 0
}

// Covers reports whether delivering change d brings the MCP server up to
// a record marked pending p: a provisioning covers a scope change (it
// sends the scopes too), a scope change does not cover a provisioning
// (the MCP server may lack the password).
func Covers(d, p vaultkv.Pending) bool {
	return p == vaultkv.PendingNone || d == p || (d == vaultkv.PendingPost && p == vaultkv.PendingPatch)
}

// Mark records on userID's record that the MCP server has not taken
// change p, unless the record already owes a change that covers it. It
// returns the record as marked (nil when there is none: a deleted record
// owes the MCP server nothing more, its deletion was owed by its own
// mark).
func Mark(ctx context.Context, s Store, userID string, p vaultkv.Pending, now time.Time) (*vaultkv.Record, error) {
	for range maxTries {
		cur, err := s.Load(ctx, userID)
		if errors.Is(err, vaultkv.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if rank(cur.MCPPending) >= rank(p) {
			return cur, nil
		}
		upd := *cur
		upd.MCPPending = p
		if upd.MCPPendingSince == 0 {
			upd.MCPPendingSince = now.Unix()
		}
		switch err := s.Save(ctx, &upd); {
		case err == nil:
			return &upd, nil
		case !errors.Is(err, vaultkv.ErrConflict):
			return nil, err
		}
	}
	return nil, fmt.Errorf("marking %s: too many concurrent writes", userID)
}

// Settle is called after the MCP server accepted change d of userID's
// record at version. If the record is still at that version, its mark is
// cleared when d covers it. If the record changed meanwhile, the MCP
// server may have taken d after the newer change (two deliveries cross on
// the way), so the record is marked "post" unless it owes a change
// already: the next round then sends the current record, and the newest
// state wins.
func Settle(ctx context.Context, s Store, userID string, version int, d vaultkv.Pending, now time.Time) error {
	for range maxTries {
		cur, err := s.Load(ctx, userID)
		if errors.Is(err, vaultkv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var upd vaultkv.Record
		switch {
		case cur.Version == version && !Covers(d, cur.MCPPending):
			return nil
		case cur.Version == version && cur.MCPPending == vaultkv.PendingNone:
			return nil
		case cur.Version == version:
			upd = *cur
			upd.MCPPending, upd.MCPPendingSince = vaultkv.PendingNone, 0
		case cur.MCPPending != vaultkv.PendingNone:
			return nil
		default:
			upd = *cur
			upd.MCPPending, upd.MCPPendingSince = vaultkv.PendingPost, now.Unix()
		}
		switch err := s.Save(ctx, &upd); {
		case err == nil:
			return nil
		case !errors.Is(err, vaultkv.ErrConflict):
			return err
		}
	}
	return fmt.Errorf("settling %s: too many concurrent writes", userID)
}
