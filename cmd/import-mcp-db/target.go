package main

import (
	"context"
	"errors"
)

// Record is one user's secret in the module's Vault layout, field for field
// what the module's store writes and the MCP server reads: username and
// scopes nil mean null, an empty Scopes slice is the list [].
type Record struct {
	UserID      string
	AppPassword string
	Username    *string
	Scopes      []string
	CreatedAt   int64 // Unix seconds
	UpdatedAt   int64 // Unix seconds
}

// Current is what the target holds for one user when the import looks.
type Current struct {
	// Found is false when the user has no readable record.
	Found bool
	// UpdatedAt is the stored record's updated_at (when Found).
	UpdatedAt int64
	// Rev identifies the stored version for check-and-set. It is the
	// target's own (the Vault store's record version); the import never
	// looks inside, it only hands it back to Put.
	Rev any
}

// Target is where the records go: in production the module's own Vault
// store, opened from the Caddyfile's app_password handler (openTarget in
// vault.go); in tests also a store in memory.
//
// The import never overwrites a record it has not seen: Put is a
// check-and-set against what Current returned, so a user who provisions
// through the module while the import runs keeps the newer record.
type Target interface {
	// Current reports the user's stored record, Found=false if none.
	Current(ctx context.Context, userID string) (Current, error)
	// Put writes rec if the user's record is still the one prev describes:
	// none for !prev.Found (create-only), else the version prev.Rev names.
	// Otherwise it writes nothing and returns an error wrapping ErrConflict.
	Put(ctx context.Context, rec Record, prev Current) error
}

// ErrConflict is returned by Target.Put when the user's record changed
// since Current looked at it.
var ErrConflict = errors.New("record changed concurrently")
