package caddyapppw

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/vault/api"
)

// newVaultClient builds the client of the official Vault library. It
// starts from api.DefaultConfig, so every VAULT_* variable works as in
// Vault's own CLI, and the config's explicit values win over them. It does
// no network I/O: Caddy must be able to start while Vault is down.
func newVaultClient(address, token, namespace string, timeout time.Duration, maxRetries int) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("VAULT_* environment: %w", cfg.Error)
	}
	if address != "" {
		cfg.Address = address
	} else if os.Getenv(api.EnvVaultAddress) == "" {
		return nil, errors.New("address is required: set it in the vault block or in VAULT_ADDR")
	}
	cfg.Timeout = timeout
	cfg.MaxRetries = maxRetries

	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if token != "" {
		client.SetToken(token)
	}
	if namespace != "" {
		client.SetNamespace(namespace)
	}
	return client, nil
}
