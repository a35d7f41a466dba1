package caddyapppw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"

	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// sweepClock is the clock of the sweepers Provision builds; nil is the
// wall clock. Tests set it before loading a config, and move it by hand.
var sweepClock sweep.Clock

// leaseRecord is the Vault lease's secret below the path prefix, for the
// capability check.
var leaseRecord = path.Join(sweep.LeaseFolder, "lease")

// provisionSweep builds the handler's sweeper over its Vault store and
// its Nextcloud client, without a network call; Provision starts it. With
// the tests' memory store (storeForTests) there is nothing to sweep.
//
// The sweep deletes straight from Vault: it hands nothing on to the MCP
// server, even with deliver_to_mcp, since the MCP server sweeps its own
// copy of the passwords.
func (h *Handler) provisionSweep() error {
	if h.vault == nil {
		return nil
	}
	s, err := sweep.New(*h.Sweep, sweep.Deps{
		Store:    sweepStore{h.vault},
		Checker:  sweepChecker{h.nextcloud},
		Lease:    h.sweepLease(),
		Clock:    sweepClock,
		Logger:   h.logger.Named("sweep"),
		Audit:    h.audit,
		Observer: sweepObserver{},
	})
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	h.sweeper = s
	return nil
}

// sweepLease is the lease that lets one replica sweep per interval: in
// Redis when the rate limit shares one (its client, its key prefix),
// else a record in Vault beside the users'. Either is named for the store
// swept, so deployments that share a Redis but not a Vault prefix do not
// hold each other up.
func (h *Handler) sweepLease() sweep.Lease {
	b := h.vault.Backend()
	if r, ok := h.accounts.(*ratelimit.Redis); ok {
		return &sweep.RedisLease{
			Client: r.Client(),
			Key:    h.RateLimit.Redis.KeyPrefix + ":sweep:" + path.Join(b.Mount, b.Prefix),
		}
	}
	return &sweep.VaultLease{
		Client: b.Client, Mount: b.Mount, Path: sweep.VaultLeasePath(b.Prefix), KVVersion: b.KVVersion, Do: b.Do,
	}
}

// sweepUsesVaultLease reports whether the scheduled rounds keep their
// lease in Vault, which the token's policy must then allow.
func (h *Handler) sweepUsesVaultLease() bool {
	_, redis := h.accounts.(*ratelimit.Redis)
	return h.sweeper != nil && !h.Sweep.Off && !redis
}

// sweepStore is the sweep's view of the Vault store.
type sweepStore struct{ s sweepSource }

// sweepSource is what the sweep needs of the store: *vaultkv.Store, or
// the tests' memory store, so that the fast lane (go test -short) runs a
// round too.
type sweepSource interface {
	List(ctx context.Context) ([]string, error)
	Load(ctx context.Context, userID string) (*vaultkv.Record, error)
	DeleteIfUnchanged(ctx context.Context, userID string, version int) error
}

// The production store.
var _ sweepSource = (*vaultkv.Store)(nil)

// List returns the stored user ids; the store leaves folders out.
func (a sweepStore) List(ctx context.Context) ([]string, error) { return a.s.List(ctx) }

// Load returns what the sweep checks of a user's record: the password,
// and the name Nextcloud expects it under (the stored username, or the
// user id when none was stored, as the API logs in).
func (a sweepStore) Load(ctx context.Context, userID string) (sweep.Entry, error) {
	rec, err := a.s.Load(ctx, userID)
	switch {
	case errors.Is(err, vaultkv.ErrNotFound):
		return sweep.Entry{}, fmt.Errorf("%w: %w", sweep.ErrNotFound, err)
	case errors.Is(err, vaultkv.ErrMalformed):
		return sweep.Entry{}, fmt.Errorf("%w: %w", sweep.ErrUnreadable, err)
	case err != nil:
		return sweep.Entry{}, err
	case rec.AppPassword == "":
		return sweep.Entry{}, fmt.Errorf("%w: the record holds no app_password", sweep.ErrUnreadable)
	}
	login := userID
	if rec.Username != nil && *rec.Username != "" {
		login = *rec.Username
	}
	return sweep.Entry{UserID: userID, Login: login, Password: rec.AppPassword, Version: rec.Version}, nil
}

// DeleteIfUnchanged deletes the record while it is still at version.
func (a sweepStore) DeleteIfUnchanged(ctx context.Context, userID string, version int) error {
	err := a.s.DeleteIfUnchanged(ctx, userID, version)
	switch {
	case errors.Is(err, vaultkv.ErrConflict):
		return fmt.Errorf("%w: %w", sweep.ErrChanged, err)
	case errors.Is(err, vaultkv.ErrNotFound):
		return fmt.Errorf("%w: %w", sweep.ErrNotFound, err)
	}
	return err
}

// sweepChecker checks a stored password with the handler's Nextcloud
// client. It sends no X-Forwarded-For: there is no client; the check
// comes from the proxy's own address.
type sweepChecker struct{ nc *nextcloud.Client }

// Check implements sweep.Checker.
func (c sweepChecker) Check(ctx context.Context, login, password, userID string) (sweep.Verdict, error) {
	return verdictOf(c.nc.Check(ctx, login, password, userID, ""))
}

// verdictOf reads Nextcloud's answer the way the sweep must: only
// Nextcloud's own refusal of the credentials (OCS status 997, in a 401 or
// in an OCS v1-style 200) is a rejection that deletes. A 401 or 403
// without it is some proxy's answer, a password that opens another
// account is a mix-up; both prove nothing about the password, like an
// outage. A 429 is Nextcloud's brute-force throttle.
func verdictOf(err error) (sweep.Verdict, error) {
	var (
		rejected  nextcloud.RejectedError
		status    nextcloud.StatusError
		wrongUser nextcloud.WrongUserError
	)
	switch {
	case err == nil:
		return sweep.Valid, nil
	case errors.As(err, &rejected) && rejected.OCSStatus == 997:
		return sweep.Rejected, nil
	case errors.As(err, &rejected):
		return sweep.Unavailable, fmt.Errorf("nextcloud answered HTTP %d without its OCS refusal (OCS status %d)", rejected.HTTPStatus, rejected.OCSStatus)
	case errors.As(err, &status) && status.Code == http.StatusTooManyRequests:
		return sweep.Throttled, err
	case errors.As(err, &wrongUser):
		return sweep.Unavailable, fmt.Errorf("the password opens another account (%s)", wrongUser.UID)
	}
	return sweep.Unavailable, err
}
