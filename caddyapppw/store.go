package caddyapppw

import (
	"context"
	"errors"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// store is what the handler needs of the secrets store: *vaultkv.Store
// in production, the memory store of the tests (storeForTests). It is an
// interface only for that seam: there is no other store to plug in, so it
// is not exported and not a guest module. The records, their errors and
// the rules a store keeps (check-and-set, no mix of old and new) are
// vaultkv's.
type store interface {
	// Load returns the record of userID, or vaultkv.ErrNotFound;
	// vaultkv.ErrLeftovers (which is an ErrNotFound) when no record is
	// readable but remains of a deleted one are stored.
	Load(ctx context.Context, userID string) (*vaultkv.Record, error)
	// Save writes rec if the stored record is still the one rec was
	// loaded from (none, for a new Record), or returns
	// vaultkv.ErrConflict.
	Save(ctx context.Context, rec *vaultkv.Record) error
	// Delete removes the record of userID and every version of it.
	Delete(ctx context.Context, userID string) error
	// DeleteIfUnchanged is Delete while the record is still at
	// version: vaultkv.ErrConflict when it was replaced since,
	// vaultkv.ErrNotFound when none is left.
	DeleteIfUnchanged(ctx context.Context, userID string, version int) error
	// List returns the stored user ids (the re-delivery rounds).
	List(ctx context.Context) ([]string, error)
}

// isGone reports a record already removed: what a deletion wanted.
func isGone(err error) bool { return errors.Is(err, vaultkv.ErrNotFound) }

// The production store.
var _ store = (*vaultkv.Store)(nil)
