package caddyapppw

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

const defaultRedisTimeout = 100 * time.Millisecond

// newRedisLimiter builds the shared limiter's client. Like the Vault
// client it does no network I/O: Caddy starts while Redis is down.
func newRedisLimiter(c *RedisConfig, repl *caddy.Replacer, zone string, local *limiter, logger *zap.Logger) (*redisLimiter, error) {
	u := repl.ReplaceKnown(c.URL, "")
	if u == "" {
		return nil, errors.New("url is required")
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err) // ParseURL's errors do not repeat the password
	}
	if pw := repl.ReplaceKnown(c.Password, ""); pw != "" {
		opts.Password = pw
	}
	if c.CACert != "" {
		if opts.TLSConfig == nil {
			return nil, errors.New("ca_cert needs a rediss:// url")
		}
		pool, err := systemPoolWithCA(c.CACert)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig.RootCAs = pool
	}
	timeout := time.Duration(c.Timeout)
	if timeout == 0 {
		timeout = defaultRedisTimeout
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = timeout, timeout, timeout
	opts.MaxRetries = -1 // a slow Redis falls back at once; no retry doubles the wait
	prefix := c.KeyPrefix
	if prefix == "" {
		prefix = "caddy-apppw"
	}
	var deny bool
	switch c.OnError {
	case "", "local":
	case "deny":
		deny = true
	default:
		return nil, fmt.Errorf("on_error: %q is neither local nor deny", c.OnError)
	}
	return &redisLimiter{
		client: redis.NewClient(opts), prefix: prefix + ":" + zone + ":", timeout: timeout,
		onErrorDeny: deny, local: local, logger: logger,
	}, nil
}
