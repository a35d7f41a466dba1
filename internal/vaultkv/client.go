package vaultkv

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/vault/api"
)

// maxIdleConns is how many kept-alive connections to Vault a config
// holds, enough for the concurrent requests of a busy instance.
const maxIdleConns = 64

// newClient builds the client of the official Vault library. It
// starts from api.DefaultConfig, so every VAULT_* variable works as in
// Vault's own CLI, and the config's explicit values win over them. It does
// no network I/O: Caddy must be able to start while Vault is down. It
// returns the HTTP client too, whose idle connections Close ends.
func newClient(v *Config, repl *caddy.Replacer) (*api.Client, *http.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, nil, fmt.Errorf("VAULT_* environment: %w", cfg.Error)
	}
	if addr := repl.ReplaceKnown(v.Address, ""); addr != "" {
		cfg.Address = addr
	} else if os.Getenv(api.EnvVaultAddress) == "" {
		return nil, nil, errors.New("address is required: set it in the vault block or in VAULT_ADDR")
	}
	cfg.Timeout = time.Duration(v.Timeout)
	cfg.MaxRetries = max(v.MaxRetries, 0)
	// The library keeps GOMAXPROCS+1 idle connections per host; under a
	// burst of provisionings the rest are closed and dialled again, which
	// costs Vault and Caddy more CPU than the writes themselves.
	if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = maxIdleConns
	}
	// Logins use a clone of the client without its token; the clone must
	// keep the namespace header.
	cfg.CloneHeaders = true

	if v.CACert != "" || v.CAPath != "" || v.ClientCert != "" || v.ClientKey != "" || v.TLSServerName != "" || v.InsecureSkipVerify {
		// Only the options given replace what VAULT_CACERT & co. said.
		tls := &api.TLSConfig{
			CACert:        v.CACert,
			CAPath:        v.CAPath,
			ClientCert:    v.ClientCert,
			ClientKey:     v.ClientKey,
			TLSServerName: v.TLSServerName,
			Insecure:      v.InsecureSkipVerify,
		}
		if err := cfg.ConfigureTLS(tls); err != nil {
			return nil, nil, fmt.Errorf("tls: %w", err)
		}
	}

	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	// NewClient took VAULT_TOKEN; a configured auth method replaces it.
	if v.TokenFile != "" || v.AppRole != nil || v.Kubernetes != nil {
		client.ClearToken()
	}
	if token := repl.ReplaceKnown(v.Token, ""); token != "" {
		client.SetToken(token)
	}
	if ns := repl.ReplaceKnown(v.Namespace, ""); ns != "" {
		client.SetNamespace(ns)
	}
	return client, cfg.HttpClient, nil
}
