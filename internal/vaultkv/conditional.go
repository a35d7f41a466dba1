package vaultkv

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/vault/api"
)

// DeleteIfUnchanged removes the record of userID, as Delete does, only
// while it is still at version (Record.Version, as Load returned it):
// ErrConflict when it was replaced since, ErrNotFound when no readable
// record is left. The sweep deletes with it, so that a user who
// re-provisioned after the sweep read the old password keeps the new one.
//
// Vault has no conditional delete. On KV v2 it reads the current version
// and then deletes the metadata: a write landing between those two round
// trips is lost. On KV v1 the read and the delete happen under the user's
// lock, which every write of this process takes too; a replica's write
// can still land in between, as for Save.
func (s *Store) DeleteIfUnchanged(ctx context.Context, userID string, version int) (err error) {
	defer func(start time.Time) { s.observed("delete", start, err) }(time.Now())
	p := s.secretPath(userID)
	if s.version == 1 {
		unlock, err := s.locks.lock(ctx, p)
		if err != nil {
			return vaultError(err)
		}
		defer unlock()
		kv := s.client.KVv1(s.mount)
		return vaultError(s.auth.do(ctx, func() error {
			cur, err := kv.Get(ctx, p)
			switch {
			case errors.Is(err, api.ErrSecretNotFound):
				return ErrNotFound
			case err != nil:
				return err
			case kv1Version(cur.Data) != version:
				return ErrConflict
			}
			return kv.Delete(ctx, p)
		}))
	}
	kv := s.client.KVv2(s.mount)
	return vaultError(s.auth.do(ctx, func() error {
		cur, err := kv.Get(ctx, p)
		switch {
		case errors.Is(err, api.ErrSecretNotFound):
			return ErrNotFound
		case err != nil:
			return err
		case cur.Data == nil:
			// The current version was deleted outside the module: no
			// password is readable, and what "vault kv undelete"
			// could bring back is the operator's to decide.
			return ErrNotFound
		case cur.VersionMetadata == nil || cur.VersionMetadata.Version != version:
			return ErrConflict
		}
		return kv.DeleteMetadata(ctx, p)
	}))
}
