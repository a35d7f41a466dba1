package vaultkv

import (
	"context"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// List returns the user ids that have a secret below the path prefix, in
// Vault's order. KV LIST also shows folders, with a trailing "/"; they
// are never user ids (a user id holds no "/") and are left out. The
// token needs "list" on <mount>/metadata/<path_prefix> (KV v2) or
// <mount>/<path_prefix> (KV v1).
func (s *Store) List(ctx context.Context) (ids []string, err error) {
	defer func(start time.Time) { s.observed("list", start, err) }(time.Now())
	p := path.Join(s.mount, "metadata", s.prefix)
	if s.version == 1 {
		p = path.Join(s.mount, s.prefix)
	}
	var sec *api.Secret
	err = s.auth.do(ctx, func() (err error) {
		sec, err = s.client.Logical().ListWithContext(ctx, p)
		return err
	})
	if err != nil {
		return nil, vaultError(err)
	}
	if sec == nil {
		return nil, nil // nothing stored: Vault answers LIST with 404
	}
	keys, _ := sec.Data["keys"].([]any)
	for _, k := range keys {
		if id, ok := k.(string); ok && id != "" && !strings.HasSuffix(id, "/") {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
