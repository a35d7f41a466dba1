package caddyapppw

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
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
//
// KV v2 gives check-and-set. KV v1 has none, so on v1 the writes of one
// user are serialised within the process (locks) and each write first
// re-reads the secret and compares it with what the record was loaded
// from. Between replicas that read and the write are still two requests:
// see kv1Version.
type kvStore struct {
	client  *api.Client
	auth    *vaultAuth
	mount   string
	prefix  string
	version int // KV engine version, 1 or 2
	locks   userLocks
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
	if errors.Is(err, api.ErrSecretNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, vaultError(err)
	}
	if sec.Data == nil {
		// KV v2 answers a deleted or destroyed current version with
		// metadata and no data: for the API that is no record, but
		// metadata and maybe undeletable versions remain.
		return nil, ErrLeftovers
	}
	rec, err = decodeRecord(sec.Data)
	if err != nil {
		return nil, err
	}
	switch {
	case s.version == 1:
		rec.version = kv1Version(sec.Data)
	case sec.VersionMetadata != nil:
		rec.version = sec.VersionMetadata.Version
	}
	return rec, nil
}

// kv1Version stands in for the version number KV v1 does not have: a
// fingerprint of the stored fields, never 0 (0 means "not stored"). A
// write compares it with the secret re-read under the user's lock. Two
// replicas can still both pass that check in the instant between one's
// read and its write; only KV v2's check-and-set closes that.
func kv1Version(data map[string]any) int {
	raw, _ := json.Marshal(data) // decoded JSON always encodes; map keys sorted: the same data, the same bytes
	sum := sha256.Sum256(raw)
	return int(binary.BigEndian.Uint64(sum[:8])>>2) | 1
}

// Save implements Store. On KV v2 it is a check-and-set write: a new
// record is written with cas=0 (create only, one round trip, the common
// case), a loaded one with cas=<its version>. Then the older versions are
// destroyed, so the previous password is not readable. The write and the
// destroy are two steps: when only the destroy fails (or needs a new
// token), the write is not repeated. KV v1 has no versions and no
// check-and-set: see saveKV1.
func (s *kvStore) Save(ctx context.Context, rec *Record) (err error) {
	defer func(start time.Time) { observeVault("save", start, err) }(time.Now())
	data, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	p := s.secretPath(rec.UserID)
	if s.version == 1 {
		return vaultError(s.saveKV1(ctx, p, rec, data))
	}
	var older []int
	err = s.auth.do(ctx, func() (err error) {
		older, err = s.put(ctx, p, rec, data)
		return err
	})
	if err != nil || len(older) == 0 {
		return vaultError(err)
	}
	err = s.auth.do(ctx, func() error { return s.client.KVv2(s.mount).Destroy(ctx, p, older) })
	if err != nil {
		return vaultError(fmt.Errorf("destroying older versions: %w", err))
	}
	return nil
}

// saveKV1 is Save on KV v1: under the user's lock, re-read the secret and
// write only if it is still the one rec was loaded from (none for a new
// record). So within a process a write never lands on a record deleted
// or changed since it was read, and a re-provisioning sees the stored
// created_at.
func (s *kvStore) saveKV1(ctx context.Context, p string, rec *Record, data map[string]any) error {
	unlock, err := s.locks.lock(ctx, p)
	if err != nil {
		return err
	}
	defer unlock()
	kv := s.client.KVv1(s.mount)
	return s.auth.do(ctx, func() error {
		cur, err := kv.Get(ctx, p)
		stored := 0
		switch {
		case errors.Is(err, api.ErrSecretNotFound):
		case err != nil:
			return err
		default:
			stored = kv1Version(cur.Data)
		}
		if stored != rec.version {
			return ErrConflict
		}
		return kv.Put(ctx, p, data)
	})
}

// put writes rec with check-and-set and returns the older versions to
// destroy.
func (s *kvStore) put(ctx context.Context, p string, rec *Record, data map[string]any) ([]int, error) {
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
		return nil, ErrConflict
	}
	if err != nil {
		return nil, err
	}
	if cas == 0 || written.VersionMetadata == nil {
		return nil, nil
	}
	newest := written.VersionMetadata.Version
	var older []int
	for v := max(1, newest-destroyWindow); v < newest; v++ {
		older = append(older, v)
	}
	return older, nil
}

// Delete implements Store. On KV v2 it deletes the metadata, which removes
// every version, deleted ones included. On KV v1 it takes the user's lock,
// so a write that re-read the secret before the delete lands before it.
func (s *kvStore) Delete(ctx context.Context, userID string) (err error) {
	defer func(start time.Time) { observeVault("delete", start, err) }(time.Now())
	p := s.secretPath(userID)
	if s.version == 1 {
		unlock, err := s.locks.lock(ctx, p)
		if err != nil {
			return vaultError(err)
		}
		defer unlock()
		return vaultError(s.auth.do(ctx, func() error { return s.client.KVv1(s.mount).Delete(ctx, p) }))
	}
	return vaultError(s.auth.do(ctx, func() error { return s.client.KVv2(s.mount).DeleteMetadata(ctx, p) }))
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
