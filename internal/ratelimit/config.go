package ratelimit

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Defaults of Config.
const (
	DefaultAttempts     = 5
	DefaultWindow       = time.Hour
	DefaultMaxUsers     = 100_000
	DefaultRedisTimeout = 100 * time.Millisecond
	DefaultKeyPrefix    = "caddy-apppw"
)

// Config bounds counted attempts per user: the `rate_limit` block of
// app_password.
type Config struct {
	// Counted attempts allowed per window. Default: 5
	Attempts int `json:"attempts,omitempty"`
	// Length of the sliding window. Default: 1h
	Window caddy.Duration `json:"window,omitempty"`
	// Most users tracked at once; at the cap the least recently active user
	// is forgotten. Default: 100000
	MaxUsers int `json:"max_users,omitempty"`
	// Name of the state shared by handlers and kept across reloads.
	// Default: the Nextcloud URL, since a user id names one account of one
	// Nextcloud.
	Zone string `json:"zone,omitempty"`
	// Redis, to share the limit among Caddy replicas. Default: none, the
	// limit is per process.
	Redis *RedisConfig `json:"redis,omitempty"`
	// A ceiling on the failed credential checks of one client address,
	// besides the per-account limit. Off by default: turn it on only when
	// Caddy sees the clients' real addresses (see PerAddressConfig).
	PerAddress *PerAddressConfig `json:"per_address,omitempty"`
}

// PerAddressConfig bounds the failed credential checks one client address
// may cause: wrong passwords and user id mismatches that Nextcloud
// answered. Format errors and outages do not count. The address is
// Caddy's client IP, which honours the server's trusted_proxies; IPv6
// addresses count by their /64. Turn it on only when that address is the
// client's: Caddy exposed directly, or behind proxies listed in
// trusted_proxies. Behind a proxy Caddy does not trust, every client has
// the proxy's address, and a few dozen wrong passwords would lock out
// everyone, Astrolabe (which calls from Nextcloud's one address) first.
type PerAddressConfig struct {
	// Failed checks allowed per window. Required.
	Failures int `json:"failures,omitempty"`
	// Length of the sliding window. Default: 1h
	Window caddy.Duration `json:"window,omitempty"`
}

// RedisConfig is the shared rate limiter's Redis: one server, or a
// primary found through Redis Sentinel.
type RedisConfig struct {
	// redis://[user:password@]host:port/db, or rediss:// for TLS.
	// Placeholders are replaced at provisioning. With Sentinel it is
	// optional and its host is not used: the scheme (rediss:// for TLS),
	// user, password and database still apply to the primary.
	URL string `json:"url,omitempty"`
	// Sentinel finds the primary, and follows it through a failover,
	// instead of the URL's host.
	Sentinel *SentinelConfig `json:"sentinel,omitempty"`
	// Password, when not in the URL (e.g. {env.REDIS_PASSWORD}).
	Password string `json:"password,omitempty"`
	// PEM file of the CA that signed Redis's certificate (rediss:// URLs),
	// besides the system's.
	CACert string `json:"ca_cert,omitempty"`
	// Bound of one Redis call; past it the check falls back. Default: 100ms
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Prefix of the keys. Default: caddy-apppw
	KeyPrefix string `json:"key_prefix,omitempty"`
	// What a check does when Redis fails: "local" (the in-process
	// limiter decides) or "deny" (503). Default: local
	OnError string `json:"on_error,omitempty"`
}

// SentinelConfig names a primary monitored by Redis Sentinel. The client
// is go-redis's failover client: it asks the sentinels for the primary's
// address, and when they promote a replica it drops its connections to
// the old primary and asks again.
type SentinelConfig struct {
	// The name the sentinels monitor the primary under. Required.
	MasterName string `json:"master_name,omitempty"`
	// host:port of the sentinels (a seed list; the client also learns
	// the others from them). Required.
	Addresses []string `json:"addresses,omitempty"`
	// Credentials of the sentinels themselves (their requirepass or an
	// ACL user), when they have any. Placeholders are replaced at
	// provisioning.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// SetDefaults fills in what the config leaves out.
func (c *Config) SetDefaults() {
	if c.Attempts == 0 {
		c.Attempts = DefaultAttempts
	}
	if c.Window == 0 {
		c.Window = caddy.Duration(DefaultWindow)
	}
	if c.MaxUsers == 0 {
		c.MaxUsers = DefaultMaxUsers
	}
	if pa := c.PerAddress; pa != nil && pa.Window == 0 {
		pa.Window = caddy.Duration(DefaultWindow)
	}
	if r := c.Redis; r != nil {
		if r.Timeout == 0 {
			r.Timeout = caddy.Duration(DefaultRedisTimeout)
		}
		if r.KeyPrefix == "" {
			r.KeyPrefix = DefaultKeyPrefix
		}
	}
}

// Validate checks the config after SetDefaults, naming the option at
// fault. The Redis URL is checked when it is opened, once its
// placeholders are replaced.
func (c *Config) Validate() error {
	switch {
	case c.Attempts < 0:
		return fmt.Errorf("attempts must be positive, not %d", c.Attempts)
	case c.Window < 0:
		return fmt.Errorf("window must be positive, not %s", time.Duration(c.Window))
	case c.MaxUsers < 0:
		return fmt.Errorf("max_users must be positive, not %d", c.MaxUsers)
	}
	if pa := c.PerAddress; pa != nil {
		switch {
		case pa.Failures <= 0:
			return fmt.Errorf("per_address: failures must be positive, not %d", pa.Failures)
		case pa.Window < 0:
			return fmt.Errorf("per_address: window must be positive, not %s", time.Duration(pa.Window))
		}
	}
	if r := c.Redis; r != nil {
		if err := r.validate(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	return nil
}

func (r *RedisConfig) validate() error {
	switch r.OnError {
	case "", "local", "deny":
	default:
		return fmt.Errorf("on_error: %q is neither local nor deny", r.OnError)
	}
	if r.Timeout < 0 {
		return errors.New("timeout must be positive")
	}
	if s := r.Sentinel; s != nil {
		switch {
		case s.MasterName == "":
			return errors.New("sentinel: the master name is required")
		case len(s.Addresses) == 0:
			return errors.New("sentinel: at least one sentinel address is required")
		}
	}
	return nil
}
