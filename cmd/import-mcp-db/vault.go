package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// openTarget opens the Vault store of the app_password handler in the
// config at configPath: the plugin's own store (internal/vaultkv), built
// as the handler's Provision builds it, so the records land in the
// module's layout at its mount and path prefix, through every auth method
// and TLS setting the Caddyfile allows, with {env.*} placeholders
// replaced. Before returning it runs the checks of `caddy app-password
// check` on it (reachable, unsealed, token valid, policy), so that an
// unreachable Vault or a refused login stops the run before any user
// instead of failing each one.
func openTarget(ctx context.Context, configPath, adapter string) (Target, error) {
	cfg, err := vaultConfig(configPath, adapter)
	if err != nil {
		return nil, err
	}
	s, err := vaultkv.New(cfg, vaultkv.Options{
		Replacer: caddy.NewReplacer(),
		Logger:   caddy.Log().Named("vault"),
	})
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	for _, c := range s.Checks(ctx) {
		if c.Err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", c.Name, c.Err)
		}
	}
	return vaultTarget{s}, nil
}

// vaultTarget is the Target of a vaultkv.Store. Its check-and-set handle
// (Current.Rev) is the loaded record's Version: Save then writes with
// cas=<version> on KV v2, or compares the stored fields on KV v1.
type vaultTarget struct{ s *vaultkv.Store }

func (v vaultTarget) Current(ctx context.Context, userID string) (Current, error) {
	r, err := v.s.Load(ctx, userID)
	if errors.Is(err, vaultkv.ErrNotFound) {
		// ErrLeftovers too (deleted versions remain): no readable record,
		// and Save's create-only write knows how to write over them.
		return Current{}, nil
	}
	if err != nil {
		return Current{}, err
	}
	return Current{Found: true, UpdatedAt: r.UpdatedAt, Rev: r.Version}, nil
}

func (v vaultTarget) Put(ctx context.Context, rec Record, prev Current) error {
	version := 0 // create only
	if prev.Found {
		var ok bool
		if version, ok = prev.Rev.(int); !ok {
			return fmt.Errorf("check-and-set handle %T is not a Vault version", prev.Rev)
		}
	}
	err := v.s.Save(ctx, &vaultkv.Record{
		UserID:      rec.UserID,
		AppPassword: rec.AppPassword,
		Username:    rec.Username,
		Scopes:      rec.Scopes,
		CreatedAt:   rec.CreatedAt,
		UpdatedAt:   rec.UpdatedAt,
		Version:     version,
	})
	if errors.Is(err, vaultkv.ErrConflict) {
		return ErrConflict
	}
	return err
}

// Close stops the token's renewal and closes the connections to Vault.
func (v vaultTarget) Close() error { return v.s.Close() }
