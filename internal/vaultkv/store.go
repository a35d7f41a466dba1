package vaultkv

import (
	"bytes"
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

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/vault/api"
	"go.uber.org/zap"
)

// destroyWindow is how many versions before the one just written a KV v2
// save destroys. Each save destroys its predecessors, so normally only one
// is readable; the window also heals a save whose destroy step failed.
const destroyWindow = 10

// Store keeps records in Vault's KV secrets engine, one secret per user
// at <prefix>/<user_id>, in the layout the MCP server reads. It is safe
// for concurrent use, and a write leaves either the old record or the new
// one, never a mix.
//
// KV v2 gives check-and-set. KV v1 has none, so on v1 the writes of one
// user are serialised within the process (locks) and each write first
// re-reads the secret and compares it with what the record was loaded
// from. Between replicas that read and the write are still two requests:
// see kv1Version.
type Store struct {
	client  *api.Client
	http    *http.Client // client's, whose idle connections Close ends
	auth    *auth
	mount   string
	prefix  string
	version int // KV engine version, 1 or 2
	locks   userLocks
	observe func(op string, took time.Duration, failure string)
}

func (s *Store) secretPath(userID string) string {
	return path.Join(s.prefix, userID)
}

// Load returns the record of userID, or ErrNotFound; ErrLeftovers (which
// is an ErrNotFound) when no record is readable but remains of a deleted
// one are stored, which Delete purges.
func (s *Store) Load(ctx context.Context, userID string) (rec *Record, err error) {
	defer func(start time.Time) { s.observed("load", start, err) }(time.Now())
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
		rec.Version = kv1Version(sec.Data)
	case sec.VersionMetadata != nil:
		rec.Version = sec.VersionMetadata.Version
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

// Save writes rec if the stored record is still the one rec was loaded
// from (none, for a new Record), or returns ErrConflict. After it, no
// older version of the password is readable. On KV v2 it is a
// check-and-set write: a new
// record is written with cas=0 (create only, one round trip, the common
// case), a loaded one with cas=<its version>. Then the older versions are
// destroyed, so the previous password is not readable. The write and the
// destroy are two steps: when only the destroy fails (or needs a new
// token), the write is not repeated. KV v1 has no versions and no
// check-and-set: see saveKV1.
func (s *Store) Save(ctx context.Context, rec *Record) (err error) {
	defer func(start time.Time) { s.observed("save", start, err) }(time.Now())
	p := s.secretPath(rec.UserID)
	if s.version == 1 {
		return vaultError(s.saveKV1(ctx, p, rec))
	}
	var (
		newest int
		older  []int
	)
	err = s.auth.do(ctx, func() (err error) {
		newest, older, err = s.put(ctx, p, rec)
		return err
	})
	if err == nil && newest > 0 {
		// rec is now the stored record: a caller can check-and-set
		// over it again (delivery marks and settles it).
		rec.Version = newest
	}
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
func (s *Store) saveKV1(ctx context.Context, p string, rec *Record) error {
	body, err := encodeRecord(rec, 1, 0)
	if err != nil {
		return err
	}
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
		if stored != rec.Version {
			return ErrConflict
		}
		if _, err = s.write(ctx, s.mount+"/"+p, body); err != nil {
			return err
		}
		// The fingerprint of what was written, as Load computes it from
		// Vault's answer (numbers as json.Number).
		var data map[string]any
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if d.Decode(&data) == nil {
			rec.Version = kv1Version(data)
		}
		return nil
	})
}

// put writes rec with check-and-set and returns the version written and
// the older versions to destroy.
func (s *Store) put(ctx context.Context, p string, rec *Record) (int, []int, error) {
	cas := rec.Version
	newest, err := s.putKV2(ctx, p, rec, cas)
	if isCASMismatch(err) && cas == 0 {
		// The path may hold a deleted (not destroyed) version, left by
		// an operator's "vault kv delete": no readable record, but its
		// version number still takes part in check-and-set.
		cur, gerr := s.client.KVv2(s.mount).Get(ctx, p)
		if gerr == nil && cur.Data == nil && cur.VersionMetadata != nil {
			cas = cur.VersionMetadata.Version
			newest, err = s.putKV2(ctx, p, rec, cas)
		}
	}
	if isCASMismatch(err) {
		return 0, nil, ErrConflict
	}
	if err != nil {
		return 0, nil, err
	}
	if cas == 0 || newest == 0 {
		return newest, nil, nil
	}
	var older []int
	for v := max(1, newest-destroyWindow); v < newest; v++ {
		older = append(older, v)
	}
	return newest, older, nil
}

// putKV2 is KVv2.Put(ctx, p, data, WithCheckAndSet(cas)) with a typed
// body, through the same client (token, namespace, retries, timeout) and
// with the same error texts: the record goes out encoded from its struct,
// and of Vault's answer only the new version number is read (0 when the
// answer has none). KVv2.Put takes a map, and turns the answer into
// metadata by reflection (mapstructure); with the record's own round
// trip through a map that was a fifth of Caddy's CPU per provisioning.
func (s *Store) putKV2(ctx context.Context, p string, rec *Record, cas int) (int, error) {
	body, err := encodeRecord(rec, 2, cas)
	if err != nil {
		return 0, err
	}
	full := s.mount + "/data/" + p
	sec, err := s.write(ctx, full, body)
	if err != nil {
		return 0, err
	}
	if sec == nil {
		return 0, fmt.Errorf("%w: after writing to %s", api.ErrSecretNotFound, full)
	}
	// A write answers the version's metadata directly under "data".
	n, ok := sec.Data["version"].(json.Number)
	if !ok {
		return 0, nil
	}
	v, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("secret was written successfully, but unable to view version metadata from response: %w", err)
	}
	return int(v), nil
}

// write PUTs body at full (the API path below /v1/, mount included) with
// the client's Logical().WriteBytesWithContext, which takes the body as
// bytes and reads the answer before its timeout's context ends. Not
// WriteRawWithContext: it cancels that context as it returns, before the
// caller can read the answer, so the connection is closed instead of
// reused (hashicorp/vault#31986). Errors read as KVv1.Put's and
// KVv2.Put's.
func (s *Store) write(ctx context.Context, full string, body []byte) (*api.Secret, error) {
	sec, err := s.client.Logical().WriteBytesWithContext(ctx, full, body)
	if err != nil {
		return nil, fmt.Errorf("error writing secret to %s: %w", full, err)
	}
	return sec, nil
}

// Delete removes the record of userID and every version of it. On KV v2
// it deletes the metadata, which removes
// every version, deleted ones included. On KV v1 it takes the user's lock,
// so a write that re-read the secret before the delete lands before it.
func (s *Store) Delete(ctx context.Context, userID string) (err error) {
	defer func(start time.Time) { s.observed("delete", start, err) }(time.Now())
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
	if err == nil {
		return false // before re, which escapes to errors.As: no allocation per write
	}
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

// Options are what a Store needs besides its Config.
type Options struct {
	// Replacer replaces the placeholders of the address, token and
	// namespace.
	Replacer *caddy.Replacer
	// Logger gets the token's lifecycle: logins, renewals, rotations.
	Logger *zap.Logger
	// Observe, if set, is told of every operation (load, save, delete,
	// list): how long it took, retries and re-login included, and, when
	// it failed for another reason than a missing or changed record, the
	// kind of failure (see errors.go). The handler feeds its metrics with
	// it.
	Observe func(op string, took time.Duration, failure string)
	// Now is the clock of the login backoff. Default: time.Now
	Now func() time.Time
}

// New builds the store of c, whose defaults are set. It makes no network
// call: Caddy must start while Vault is down; the first request logs in.
func New(c *Config, o Options) (*Store, error) {
	if o.Replacer == nil {
		o.Replacer = caddy.NewReplacer()
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	client, httpClient, err := newClient(c, o.Replacer)
	if err != nil {
		return nil, err
	}
	return &Store{
		client: client, http: httpClient, auth: newAuth(client, c, o.Logger, o.Now),
		mount: c.Mount, prefix: c.PathPrefix, version: c.KVVersion, observe: o.Observe,
	}, nil
}

// Close stops the token's renewal goroutines and waits for them, and
// closes the kept-alive connections (and the goroutines serving them):
// each config has its own client, and a reload must leave none behind.
func (s *Store) Close() error {
	s.auth.close()
	s.http.CloseIdleConnections()
	return nil
}

// observed reports one operation to the observer.
func (s *Store) observed(op string, start time.Time, err error) {
	if s.observe == nil {
		return
	}
	failure := ""
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
		failure = vaultErrorKind(err)
	}
	s.observe(op, time.Since(start), failure)
}
