// Package nextcloud proves app passwords against a Nextcloud server's OCS
// API, and answers whether that server is up. The app_password handler
// uses it on every request that needs a password proven, the `caddy
// app-password check` command for its reachability line, and the sweep
// to find stored passwords Nextcloud no longer accepts.
//
// It knows nothing of Caddy's HTTP packages: outcomes are typed errors,
// which the handler maps to the API's answers and the sweep to its
// verdicts.
package nextcloud

import (
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// DefaultTimeout bounds one credential check. Astrolabe's own timeout is
// 10 s, and an answer later than that reaches nobody.
const DefaultTimeout = 10 * time.Second

// Config says how to reach Nextcloud's OCS API: the `nextcloud` block of
// app_password.
type Config struct {
	// Base URL of Nextcloud, e.g. https://cloud.example.com. Placeholders
	// such as {env.NEXTCLOUD_URL} are replaced at provisioning.
	URL string `json:"url,omitempty"`
	// Timeout of one credential check. Default: 10s
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// PEM file of CA certificates to trust besides the system's.
	CACert string `json:"ca_cert,omitempty"`
	// Skip TLS verification. For labs only.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// SetDefaults fills in what the config leaves out.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = caddy.Duration(DefaultTimeout)
	}
}

// Validate checks what can be checked before placeholders are replaced;
// New checks the URL they give.
func (c *Config) Validate() error {
	if c.URL == "" {
		return errors.New("url is required")
	}
	if c.Timeout < 0 {
		return errors.New("timeout must be positive")
	}
	return nil
}
