package vaultkv

import (
	"context"

	"github.com/hashicorp/vault/api"
)

// Backend is the store's Vault client and layout, for a caller that keeps
// a record of its own beside the users' (the sweep's lease, at
// <prefix>/_sweep/lease). It is not a way around the Store for records:
// the records' rules (check-and-set, destroyed versions) are the Store's.
type Backend struct {
	Client    *api.Client
	Mount     string // e.g. "secret"
	Prefix    string // the path prefix, e.g. "nextcloud-mcp/app-passwords"
	KVVersion int    // 1 or 2
	// Do runs a call with the store's token: it logs in first when the
	// token is missing, and again (once) when Vault refuses it.
	Do func(ctx context.Context, op func() error) error
}

// Backend returns the store's client and layout. They stay valid until
// Close.
func (s *Store) Backend() Backend {
	return Backend{Client: s.client, Mount: s.mount, Prefix: s.prefix, KVVersion: s.version, Do: s.auth.do}
}
