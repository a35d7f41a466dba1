package sweep

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/hashicorp/vault/api"
)

// LeaseFolder is the folder under the path prefix that holds the Vault
// lease. A user id never has a "/", so KV LIST shows the folder as
// "_sweep/" (with the slash) and no reader takes it for a user.
const LeaseFolder = "_sweep"

// VaultLeasePath is the lease's secret path for a path prefix:
// <prefix>/_sweep/lease. The module's policy on <prefix>/* covers it.
func VaultLeasePath(prefix string) string {
	return path.Join(prefix, LeaseFolder, "lease")
}

// VaultLease is the lease for replicas that share only Vault: a KV secret
// {holder, expires_at (RFC 3339)} at Path.
//
// On KV v2 taking it is a check-and-set write at the version just read,
// so of two replicas racing for it exactly one wins. KV v1 has no
// check-and-set: the lease is written, then read back to see who won.
// Two replicas whose read, write and read-back interleave can both
// believe they won, and run one round each; that costs Nextcloud a
// second round's checks and deletes nothing wrongly (each deletion is
// still checked). Use KV v2 or Redis where that matters.
type VaultLease struct {
	Client    *api.Client
	Mount     string // e.g. "secret"
	Path      string // VaultLeasePath(prefix)
	KVVersion int    // 1 or 2
	// Do, when set, runs each Vault call: the store's wrapper that logs
	// in again when the token has expired.
	Do func(ctx context.Context, op func() error) error
}

type leaseRecord struct {
	holder  string
	expires time.Time
	version int // KV v2: the version read, for check-and-set
}

func (l *VaultLease) do(ctx context.Context, op func() error) error {
	if l.Do != nil {
		return l.Do(ctx, op)
	}
	return op()
}

// read returns the lease record; holder "" when there is none.
func (l *VaultLease) read(ctx context.Context) (leaseRecord, error) {
	var sec *api.KVSecret
	err := l.do(ctx, func() (err error) {
		if l.KVVersion == 1 {
			sec, err = l.Client.KVv1(l.Mount).Get(ctx, l.Path)
		} else {
			sec, err = l.Client.KVv2(l.Mount).Get(ctx, l.Path)
		}
		return err
	})
	if errors.Is(err, api.ErrSecretNotFound) {
		return leaseRecord{}, nil
	}
	if err != nil {
		return leaseRecord{}, err
	}
	var rec leaseRecord
	if sec.VersionMetadata != nil {
		// Also set for a deleted version: the next write must name it.
		rec.version = sec.VersionMetadata.Version
	}
	if h, ok := sec.Data["holder"].(string); ok {
		rec.holder = h
	}
	if e, ok := sec.Data["expires_at"].(string); ok {
		rec.expires, _ = time.Parse(time.RFC3339Nano, e)
	}
	return rec, nil
}

func (l *VaultLease) write(ctx context.Context, holder string, expires time.Time, cas int) error {
	data := map[string]any{"holder": holder, "expires_at": ""}
	if !expires.IsZero() {
		data["expires_at"] = expires.UTC().Format(time.RFC3339Nano)
	}
	return l.do(ctx, func() error {
		if l.KVVersion == 1 {
			return l.Client.KVv1(l.Mount).Put(ctx, l.Path, data)
		}
		_, err := l.Client.KVv2(l.Mount).Put(ctx, l.Path, data, api.WithCheckAndSet(cas))
		return err
	})
}

// Acquire implements Lease.
func (l *VaultLease) Acquire(ctx context.Context, holder string, now time.Time, ttl time.Duration) (bool, error) {
	if holder == "" || ttl <= 0 {
		return false, errors.New("sweep lease: empty holder or ttl not positive")
	}
	cur, err := l.read(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the sweep lease: %w", err)
	}
	if cur.holder != "" && cur.holder != holder && now.Before(cur.expires) {
		return false, nil
	}
	if err := l.write(ctx, holder, now.Add(ttl), cur.version); err != nil {
		// On KV v2 a lost check-and-set race is an error too: tell it
		// from a failing Vault by who holds the lease now.
		if won, rerr := l.read(ctx); rerr == nil && won.holder != holder && now.Before(won.expires) {
			return false, nil
		}
		return false, fmt.Errorf("writing the sweep lease: %w", err)
	}
	if l.KVVersion != 1 {
		return true, nil
	}
	back, err := l.read(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the sweep lease back: %w", err)
	}
	return back.holder == holder, nil
}

// Release implements Lease. On KV v2 the release is a check-and-set write
// of an empty holder, so a lease another replica took meanwhile stays.
func (l *VaultLease) Release(ctx context.Context, holder string) error {
	cur, err := l.read(ctx)
	if err != nil {
		return fmt.Errorf("reading the sweep lease: %w", err)
	}
	if cur.holder != holder {
		return nil
	}
	if err := l.write(ctx, "", time.Time{}, cur.version); err != nil {
		return fmt.Errorf("releasing the sweep lease: %w", err)
	}
	return nil
}
