package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/tlsca"
)

// newRedis builds a shared limiter over keyspace (the zone, or
// "addr:<zone>" for the per-address limit) that wraps local and owns it
// from then on. Like the Vault client it does no network I/O: Caddy
// starts while Redis is down. Its client comes from redisConns and is let
// go of by Close. c's defaults are set.
func newRedis(c *RedisConfig, keyspace string, local *Local, o Options) (*Redis, error) {
	u := o.Replacer.ReplaceKnown(c.URL, "")
	if u == "" {
		if c.Sentinel == nil {
			return nil, errors.New("url is required")
		}
		u = "redis://" // the sentinels name the primary
	} else if c.Sentinel != nil {
		if pu, err := url.Parse(u); err == nil && pu.Host != "" {
			return nil, fmt.Errorf("url: with sentinel the url names no host (the sentinels name the primary): %s://%s", pu.Scheme, pu.Host)
		}
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		return nil, redactRedisURLError(u, err)
	}
	pw := o.Replacer.ReplaceKnown(c.Password, "")
	if pw != "" {
		opts.Password = pw
	}
	if c.CACert != "" {
		if opts.TLSConfig == nil {
			return nil, errors.New("ca_cert needs a rediss:// url")
		}
		pool, err := tlsca.SystemPoolWithCA(c.CACert)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig.RootCAs = pool
	}
	timeout := time.Duration(c.Timeout)
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = timeout, timeout, timeout
	opts.MaxRetries = -1 // a slow Redis falls back at once; no retry doubles the wait
	// One dial per check, for the same reason, and so that the check fails
	// with the dial's own error (a refused connection, an unknown CA, a
	// wrong server name) rather than with its deadline while the pool
	// still backs off between retries.
	opts.DialerRetries = 1
	newClient := func() *redis.Client { return redis.NewClient(opts) }
	keyParts := []string{u, pw, c.CACert, timeout.String()}
	if s := c.Sentinel; s != nil {
		fo := failoverOptions(opts, s, o.Replacer)
		newClient = func() *redis.Client { return redis.NewFailoverClient(fo) }
		keyParts = append(keyParts, "sentinel", fo.MasterName, fo.SentinelUsername, fo.SentinelPassword)
		keyParts = append(keyParts, fo.SentinelAddrs...)
	}
	// The key names the client's options, hashed so that no password is
	// kept as a map key.
	sum := sha256.Sum256([]byte(strings.Join(keyParts, "\x00")))
	connKey := hex.EncodeToString(sum[:])
	return &Redis{
		local: local, conn: acquireRedisConn(connKey, newClient), connKey: connKey,
		prefix: c.KeyPrefix + ":" + keyspace + ":", timeout: timeout, lease: o.Lease,
		onErrorDeny: c.OnError == "deny", logger: o.Logger, onFallback: o.OnFallback,
	}, nil
}

// failoverOptions are opts (the URL's credentials, database, TLS and the
// timeouts) for go-redis's Sentinel failover client: the primary is
// whatever the sentinels say it is, so a promoted replica is used without
// a reload. The sentinels are asked with the same timeouts, so a check
// still falls back within its bound while they are down.
func failoverOptions(opts *redis.Options, s *SentinelConfig, repl *caddy.Replacer) *redis.FailoverOptions {
	addrs := make([]string, len(s.Addresses))
	for i, a := range s.Addresses {
		addrs[i] = repl.ReplaceKnown(a, "")
	}
	tlsConfig := opts.TLSConfig
	if tlsConfig != nil {
		// The URL names no host: each dial verifies the address the
		// sentinels gave.
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = ""
	}
	return &redis.FailoverOptions{
		MasterName:       repl.ReplaceKnown(s.MasterName, ""),
		SentinelAddrs:    addrs,
		SentinelUsername: repl.ReplaceKnown(s.Username, ""),
		SentinelPassword: repl.ReplaceKnown(s.Password, ""),
		Username:         opts.Username,
		Password:         opts.Password,
		DB:               opts.DB,
		TLSConfig:        tlsConfig,
		DialTimeout:      opts.DialTimeout,
		ReadTimeout:      opts.ReadTimeout,
		WriteTimeout:     opts.WriteTimeout,
		MaxRetries:       opts.MaxRetries,
		DialerRetries:    opts.DialerRetries,
	}
}

// redactRedisURLError reports a Redis URL that does not parse without
// its user info: url.Parse quotes the whole URL, and even its reason can
// hold a piece of the password ("invalid port \":pa\"" for a password
// with a slash).
func redactRedisURLError(raw string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("url: cannot parse %q (user info hidden; percent-encode reserved characters in it)", redactURL(raw))
	}
	// go-redis's own errors name the scheme, database or an option; the
	// user info is hidden in case one repeats part of it.
	msg := err.Error()
	if info := userInfo(raw); info != "" {
		msg = strings.ReplaceAll(msg, info, "xxxxx")
		if _, pw, ok := strings.Cut(info, ":"); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return errors.New("url: " + msg)
}

// userInfo is what lies between "://" (or the start) and the last "@"
// of raw, however malformed, or "".
func userInfo(raw string) string {
	rest := raw[authorityStart(raw):]
	j := strings.LastIndex(rest, "@")
	if j < 0 {
		return ""
	}
	return rest[:j]
}

func authorityStart(raw string) int {
	if i := strings.Index(raw, "://"); i >= 0 {
		return i + 3
	}
	return 0
}

// redactURL replaces raw's user info with "xxxxx".
func redactURL(raw string) string {
	info := userInfo(raw)
	if info == "" {
		return raw
	}
	i := authorityStart(raw)
	return raw[:i] + "xxxxx" + raw[i+len(info):]
}
