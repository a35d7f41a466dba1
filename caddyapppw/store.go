package caddyapppw

import (
	"context"
	"errors"
	"fmt"
)

// Record is one user's secret as stored, field for field the Vault layout
// of docs/API.md that the MCP server reads.
type Record struct {
	UserID      string   `json:"user_id"`
	AppPassword string   `json:"app_password"`
	Username    *string  `json:"username"`
	Scopes      []string `json:"scopes"`
	CreatedAt   int64    `json:"created_at"`
	UpdatedAt   int64    `json:"updated_at"`

	// version is the storage's version of this record (KV v2's version
	// number; on KV v1, which has none, a fingerprint of the stored
	// fields), for check-and-set. Zero means "not stored yet".
	version int
}

// Store keeps the records. Implementations must be safe for concurrent use
// and must leave either the old record or the new one, never a mix.
type Store interface {
	// Load returns the record of userID, or ErrNotFound; ErrLeftovers
	// (which is an ErrNotFound) when no record is readable but remains of
	// a deleted one are stored, which Delete purges.
	Load(ctx context.Context, userID string) (*Record, error)
	// Save writes rec if the stored record is still the one rec was
	// loaded from (none, for a new Record), or returns ErrConflict. After
	// it, no older version of the password is readable.
	Save(ctx context.Context, rec *Record) error
	// Delete removes the record of userID and every version of it.
	Delete(ctx context.Context, userID string) error
}

var (
	// ErrNotFound is returned by Load when the user has no record.
	ErrNotFound = errors.New("no record")
	// ErrLeftovers is returned by Load when the current version of the
	// record was deleted or destroyed outside the module (an operator's
	// "vault kv delete") while its metadata, and maybe versions that
	// "vault kv undelete" would bring back, remain.
	ErrLeftovers = fmt.Errorf("%w; deleted versions remain", ErrNotFound)
	// ErrConflict is returned by Save when the record changed since it was
	// loaded.
	ErrConflict = errors.New("record changed concurrently")
)
