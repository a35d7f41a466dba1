package caddyapppw

import (
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("app_password", parseCaddyfile)
	// Before the auth directives (and so before reverse_proxy): the API
	// authenticates its own callers, and a site-wide basic_auth or
	// forward_auth in front of it would demand credentials Astrolabe does
	// not have.
	httpcaddyfile.RegisterDirectiveOrder("app_password", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	app_password [<matcher>] {
//	    prefix          <path>
//	    password_format default|strict
//	    scopes          <scope...>
//	    nextcloud <url> {
//	        timeout              <duration>
//	        ca_cert              <pem_file>
//	        insecure_skip_verify
//	    }
//	    vault [<address>] {
//	        token       <token>
//	        token_file  <file>
//	        approle {
//	            role_id|role_id_file <value>
//	            secret_id|secret_id_file|secret_id_env <value>
//	            wrapped
//	            mount <path>
//	        }
//	        kubernetes [<role>] {
//	            role       <role>
//	            token_path <file>
//	            mount      <path>
//	        }
//	        ca_cert         <pem_file>
//	        ca_path         <dir>
//	        client_cert     <pem_file>
//	        client_key      <pem_file>
//	        tls_server_name <name>
//	        insecure_skip_verify
//	        namespace   <namespace>
//	        mount       <mount>
//	        path_prefix <path>
//	        kv_version  1|2
//	        timeout     <duration>
//	        max_retries <n>
//	    }
//	    rate_limit [<attempts> [<window>]] {
//	        max_users   <n>
//	        zone        <name>
//	        per_address <failures> [<window>]
//	        redis <url> {
//	            password   <password>
//	            timeout    <duration>
//	            key_prefix <prefix>
//	            ca_cert    <pem_file>
//	        }
//	        on_error local|deny
//	    }
//	    deliver_to_mcp <mcp_server_address> {
//	        interval <duration>
//	        give_up  <duration>
//	    }
//	    sweep [off] {
//	        interval       <duration>
//	        rate           <checks_per_second>
//	        concurrency    <n>
//	        slow_threshold <duration>
//	        max_failures   <n>
//	        off
//	    }
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "prefix":
			err = oneArg(d, &h.Prefix)
		case "password_format":
			err = oneArg(d, &h.PasswordFormat)
		case "scopes":
			h.Scopes = append(h.Scopes, d.RemainingArgs()...)
			if len(h.Scopes) == 0 {
				err = d.ArgErr()
			}
		case "nextcloud":
			err = h.unmarshalNextcloud(d)
		case "vault":
			err = h.unmarshalVault(d)
		case "rate_limit":
			err = h.unmarshalRateLimit(d)
		case "sweep":
			err = h.unmarshalSweep(d)
		case "deliver_to_mcp":
			err = h.unmarshalDelivery(d)
		default:
			err = d.Errf("unrecognized app_password option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) unmarshalNextcloud(d *caddyfile.Dispenser) error {
	if h.Nextcloud == nil {
		h.Nextcloud = new(nextcloud.Config)
	}
	nc := h.Nextcloud
	if d.NextArg() {
		nc.URL = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "url":
			err = oneArg(d, &nc.URL)
		case "timeout":
			err = durationArg(d, &nc.Timeout)
		case "ca_cert":
			err = oneArg(d, &nc.CACert)
		case "insecure_skip_verify":
			nc.InsecureSkipVerify = true
			err = noArgs(d)
		default:
			err = d.Errf("unrecognized nextcloud option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) unmarshalVault(d *caddyfile.Dispenser) error {
	if h.Vault == nil {
		h.Vault = new(vaultkv.Config)
	}
	v := h.Vault
	if d.NextArg() {
		v.Address = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "address":
			err = oneArg(d, &v.Address)
		case "token":
			err = oneArg(d, &v.Token)
		case "namespace":
			err = oneArg(d, &v.Namespace)
		case "mount":
			err = oneArg(d, &v.Mount)
		case "path_prefix":
			err = oneArg(d, &v.PathPrefix)
		case "kv_version":
			err = intArg(d, &v.KVVersion)
		case "timeout":
			err = durationArg(d, &v.Timeout)
		case "max_retries":
			err = retriesArg(d, &v.MaxRetries)
		case "token_file":
			err = oneArg(d, &v.TokenFile)
		case "approle":
			v.AppRole = new(vaultkv.AppRoleConfig)
			err = unmarshalAppRole(d, v.AppRole)
		case "kubernetes":
			v.Kubernetes = new(vaultkv.KubernetesConfig)
			err = unmarshalKubernetes(d, v.Kubernetes)
		case "ca_cert":
			err = oneArg(d, &v.CACert)
		case "ca_path":
			err = oneArg(d, &v.CAPath)
		case "client_cert":
			err = oneArg(d, &v.ClientCert)
		case "client_key":
			err = oneArg(d, &v.ClientKey)
		case "tls_server_name":
			err = oneArg(d, &v.TLSServerName)
		case "insecure_skip_verify":
			v.InsecureSkipVerify = true
			err = noArgs(d)
		default:
			err = d.Errf("unrecognized vault option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) unmarshalRateLimit(d *caddyfile.Dispenser) error {
	if h.RateLimit == nil {
		h.RateLimit = new(ratelimit.Config)
	}
	rl := h.RateLimit
	args := d.RemainingArgs()
	if len(args) > 2 {
		return d.ArgErr()
	}
	if len(args) >= 1 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 {
			return d.Errf("rate_limit: attempts must be a positive integer, not '%s'", args[0])
		}
		rl.Attempts = n
	}
	if len(args) == 2 {
		dur, err := caddy.ParseDuration(args[1])
		if err != nil || dur <= 0 {
			return d.Errf("rate_limit: window must be a positive duration, not '%s'", args[1])
		}
		rl.Window = caddy.Duration(dur)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "attempts":
			err = intArg(d, &rl.Attempts)
		case "window":
			err = durationArg(d, &rl.Window)
		case "max_users":
			err = intArg(d, &rl.MaxUsers)
		case "zone":
			err = oneArg(d, &rl.Zone)
		case "per_address":
			err = unmarshalPerAddress(d, rl)
		case "redis":
			err = unmarshalRedis(d, redisOf(rl))
		case "on_error":
			err = oneArg(d, &redisOf(rl).OnError)
		default:
			err = d.Errf("unrecognized rate_limit option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if rl.Redis != nil && rl.Redis.URL == "" && rl.Redis.Sentinel == nil {
		return d.Err("rate_limit: on_error goes with redis <url>")
	}
	return nil
}

// unmarshalSweep reads the sweep block; "sweep off" is short for a block
// with off alone.
func (h *Handler) unmarshalSweep(d *caddyfile.Dispenser) error {
	if h.Sweep == nil {
		h.Sweep = new(sweep.Config)
	}
	sw := h.Sweep
	if d.NextArg() {
		if d.Val() != "off" {
			return d.Errf("sweep: unrecognized argument '%s' (only 'off')", d.Val())
		}
		sw.Off = true
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "interval":
			err = durationArg(d, &sw.Interval)
		case "rate":
			err = rateArg(d, &sw.Rate)
		case "concurrency":
			err = intArg(d, &sw.Concurrency)
		case "slow_threshold":
			err = durationArg(d, &sw.SlowThreshold)
		case "max_failures":
			err = intArg(d, &sw.MaxFailures)
		case "off":
			sw.Off = true
			err = noArgs(d)
		default:
			err = d.Errf("unrecognized sweep option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// rateArg reads a positive number (fractions allowed) argument.
func rateArg(d *caddyfile.Dispenser, dst *float64) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return d.Errf("%s: '%s' is not a positive number", opt, s)
	}
	*dst = f
	return nil
}

// unmarshalPerAddress reads "per_address <failures> [<window>]".
func unmarshalPerAddress(d *caddyfile.Dispenser, rl *ratelimit.Config) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.ArgErr()
	}
	pa := new(ratelimit.PerAddressConfig)
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("per_address: failures must be a positive integer, not '%s'", args[0])
	}
	pa.Failures = n
	if len(args) == 2 {
		dur, err := caddy.ParseDuration(args[1])
		if err != nil || dur <= 0 {
			return d.Errf("per_address: window must be a positive duration, not '%s'", args[1])
		}
		pa.Window = caddy.Duration(dur)
	}
	rl.PerAddress = pa
	return nil
}

// redisOf returns the Redis config of rl, creating it on first use:
// on_error may come before redis <url>.
func redisOf(rl *ratelimit.Config) *ratelimit.RedisConfig {
	if rl.Redis == nil {
		rl.Redis = new(ratelimit.RedisConfig)
	}
	return rl.Redis
}

// unmarshalRedis reads `redis [<url>] { ... }`; the URL may be left out
// when a sentinel line names the primary.
func unmarshalRedis(d *caddyfile.Dispenser, r *ratelimit.RedisConfig) error {
	if d.NextArg() {
		r.URL = d.Val()
	}
	if err := noArgs(d); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "sentinel":
			err = unmarshalSentinel(d, sentinelOf(r))
		case "sentinel_username":
			err = oneArg(d, &sentinelOf(r).Username)
		case "sentinel_password":
			err = oneArg(d, &sentinelOf(r).Password)
		case "password":
			err = oneArg(d, &r.Password)
		case "timeout":
			err = durationArg(d, &r.Timeout)
		case "key_prefix":
			err = oneArg(d, &r.KeyPrefix)
		case "ca_cert":
			err = oneArg(d, &r.CACert)
		default:
			err = d.Errf("unrecognized redis option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if r.URL == "" && (r.Sentinel == nil || r.Sentinel.MasterName == "") {
		return d.Err("redis: give a url, or a sentinel line in its block")
	}
	return nil
}

func sentinelOf(r *ratelimit.RedisConfig) *ratelimit.SentinelConfig {
	if r.Sentinel == nil {
		r.Sentinel = new(ratelimit.SentinelConfig)
	}
	return r.Sentinel
}

// unmarshalSentinel reads `sentinel <master_name> <host:port>...`.
func unmarshalSentinel(d *caddyfile.Dispenser, s *ratelimit.SentinelConfig) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	s.MasterName = d.Val()
	s.Addresses = d.RemainingArgs()
	if len(s.Addresses) == 0 {
		return d.Err("sentinel: give the master name and at least one sentinel address")
	}
	return nil
}

func unmarshalAppRole(d *caddyfile.Dispenser, ar *vaultkv.AppRoleConfig) error {
	if err := noArgs(d); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "role_id":
			err = oneArg(d, &ar.RoleID)
		case "role_id_file":
			err = oneArg(d, &ar.RoleIDFile)
		case "secret_id":
			err = oneArg(d, &ar.SecretID)
		case "secret_id_file":
			err = oneArg(d, &ar.SecretIDFile)
		case "secret_id_env":
			err = oneArg(d, &ar.SecretIDEnv)
		case "wrapped":
			ar.Wrapped = true
			err = noArgs(d)
		case "mount":
			err = oneArg(d, &ar.Mount)
		default:
			err = d.Errf("unrecognized approle option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unmarshalKubernetes(d *caddyfile.Dispenser, k *vaultkv.KubernetesConfig) error {
	if d.NextArg() {
		k.Role = d.Val()
	}
	if err := noArgs(d); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "role":
			err = oneArg(d, &k.Role)
		case "token_path":
			err = oneArg(d, &k.TokenPath)
		case "mount":
			err = oneArg(d, &k.Mount)
		default:
			err = d.Errf("unrecognized kubernetes option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// noArgs refuses arguments after the current token.
func noArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// oneArg reads the single argument of the current option into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// intArg reads a positive integer argument.
func intArg(d *caddyfile.Dispenser, dst *int) error {
	return intArgFrom(d, dst, 1)
}

// retriesArg reads max_retries: a positive integer, or -1 for none (0 in
// JSON means the default).
func retriesArg(d *caddyfile.Dispenser, dst *int) error {
	return intArgFrom(d, dst, -1)
}

// intArgFrom reads an integer argument of least, or of 1 and up.
func intArgFrom(d *caddyfile.Dispenser, dst *int, least int) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 && n != least {
		return d.Errf("%s: '%s' is not a positive integer", opt, s)
	}
	*dst = n
	return nil
}

// durationArg reads a positive duration argument.
func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur <= 0 {
		return d.Errf("%s: '%s' is not a positive duration", opt, s)
	}
	*dst = caddy.Duration(dur)
	return nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)

// unmarshalDelivery reads `deliver_to_mcp <address> { interval; give_up }`.
func (h *Handler) unmarshalDelivery(d *caddyfile.Dispenser) error {
	h.DeliverToMCP = true
	if !d.NextArg() {
		return d.Err("deliver_to_mcp needs the MCP server's address (e.g. deliver_to_mcp http://127.0.0.1:8000): " +
			"changes it did not take are delivered there again in the background")
	}
	h.MCPServer = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "interval":
			err = durationArg(d, &h.RedeliveryInterval)
		case "give_up":
			err = durationArg(d, &h.RedeliveryGiveUp)
		default:
			err = d.Errf("unrecognized deliver_to_mcp option '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
