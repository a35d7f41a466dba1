package caddyapppw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// destroyWindow is how many versions before the one just written a KV v2
// save destroys. Each save destroys its predecessors, so normally only one
// is readable; the window also heals a save whose destroy step failed.
const destroyWindow = 10

// kvStore keeps records in Vault's KV secrets engine, one secret per user
// at <prefix>/<user_id>, in the layout the MCP server reads.
type kvStore struct {
	client  *api.Client
	auth    *vaultAuth
	mount   string
	prefix  string
	version int // KV engine version, 1 or 2
}

func (s *kvStore) secretPath(userID string) string {
	return path.Join(s.prefix, userID)
}

// Load implements Store.
func (s *kvStore) Load(ctx context.Context, userID string) (rec *Record, err error) {
	defer func(start time.Time) { observeVault("load", start, err) }(time.Now())
	var sec *api.KVSecret
	err = s.auth.do(ctx, func() (err error) {
		if s.version == 1 {
			sec, err = s.client.KVv1(s.mount).Get(ctx, s.secretPath(userID))
		} else {
			sec, err = s.client.KVv2(s.mount).Get(ctx, s.secretPath(userID))
		}
		return err
	})
	if errors.Is(err, api.ErrSecretNotFound) || err == nil && sec.Data == nil {
		// KV v2 answers a deleted or destroyed current version with
		// metadata and no data: for the API that is no record.
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, vaultError(err)
	}
	rec, err = decodeRecord(sec.Data)
	if err != nil {
		return nil, err
	}
	if sec.VersionMetadata != nil {
		rec.version = sec.VersionMetadata.Version
	}
	return rec, nil
}

// Save implements Store. On KV v2 it is a check-and-set write: a new
// record is written with cas=0 (create only, one round trip, the common
// case), a loaded one with cas=<its version>. Then the older versions are
// destroyed, so the previous password is not readable. KV v1 has no
// versions and no check-and-set: the write simply replaces the secret.
func (s *kvStore) Save(ctx context.Context, rec *Record) (err error) {
	defer func(start time.Time) { observeVault("save", start, err) }(time.Now())
	return vaultError(s.auth.do(ctx, func() error { return s.save(ctx, rec) }))
}

func (s *kvStore) save(ctx context.Context, rec *Record) error {
	data, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	p := s.secretPath(rec.UserID)
	if s.version == 1 {
		return s.client.KVv1(s.mount).Put(ctx, p, data)
	}

	kv := s.client.KVv2(s.mount)
	cas := rec.version
	written, err := kv.Put(ctx, p, data, api.WithCheckAndSet(cas))
	if isCASMismatch(err) && cas == 0 {
		// The path may hold a deleted (not destroyed) version, left by
		// an operator's "vault kv delete": no readable record, but its
		// version number still takes part in check-and-set.
		cur, gerr := kv.Get(ctx, p)
		if gerr == nil && cur.Data == nil && cur.VersionMetadata != nil {
			cas = cur.VersionMetadata.Version
			written, err = kv.Put(ctx, p, data, api.WithCheckAndSet(cas))
		}
	}
	if isCASMismatch(err) {
		return ErrConflict
	}
	if err != nil {
		return err
	}
	if cas == 0 || written.VersionMetadata == nil {
		return nil
	}
	newest := written.VersionMetadata.Version
	var older []int
	for v := max(1, newest-destroyWindow); v < newest; v++ {
		older = append(older, v)
	}
	if err := kv.Destroy(ctx, p, older); err != nil {
		return fmt.Errorf("destroying older versions: %w", err)
	}
	return nil
}

// Delete implements Store. On KV v2 it deletes the metadata, which removes
// every version.
func (s *kvStore) Delete(ctx context.Context, userID string) (err error) {
	defer func(start time.Time) { observeVault("delete", start, err) }(time.Now())
	return vaultError(s.auth.do(ctx, func() error {
		if s.version == 1 {
			return s.client.KVv1(s.mount).Delete(ctx, s.secretPath(userID))
		}
		return s.client.KVv2(s.mount).DeleteMetadata(ctx, s.secretPath(userID))
	}))
}

// isCASMismatch reports Vault's refusal of a check-and-set write.
func isCASMismatch(err error) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, "check-and-set") {
			return true
		}
	}
	return false
}

// encodeRecord turns rec into the secret's fields. Going through JSON keeps
// the field names in one place, the struct tags of Record.
func encodeRecord(rec *Record) (map[string]any, error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	var data map[string]any
	return data, json.Unmarshal(raw, &data)
}

func decodeRecord(data map[string]any) (*Record, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("stored record is malformed: %w", err)
	}
	return &rec, nil
}
