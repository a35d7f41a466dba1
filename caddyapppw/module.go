// Package caddyapppw is a Caddy HTTP handler that serves the Nextcloud MCP
// server's app-password API: it proves each app password against
// Nextcloud and keeps it in HashiCorp Vault, where the MCP server reads it.
// Every other request passes to the next handler untouched.
package caddyapppw

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of docs/API.md.
const (
	defaultPrefix     = "/api/v1"
	defaultTimeout    = 10 * time.Second
	defaultAttempts   = 5
	defaultWindow     = time.Hour
	defaultMaxUsers   = 100_000
	defaultMount      = "secret"
	defaultPathPrefix = "nextcloud-mcp/app-passwords"
	defaultKVVersion  = 2
	defaultRetries    = 2
)

// clock is where handlers read the time; tests replace it before loading a
// config.
var clock = time.Now

// Handler serves the app-password API of the Nextcloud MCP server.
type Handler struct {
	// Path prefix of the API. Default: /api/v1
	Prefix string `json:"prefix,omitempty"`

	// Nextcloud, against which app passwords are proven. Required.
	Nextcloud *NextcloudConfig `json:"nextcloud,omitempty"`

	// Vault, where the app passwords are kept.
	Vault *VaultConfig `json:"vault,omitempty"`

	// Per-user rate limit of attempts.
	RateLimit *RateLimitConfig `json:"rate_limit,omitempty"`

	// "default" accepts [A-Za-z0-9-]{20,256}; "strict" accepts only
	// Nextcloud's dashed 5×5 form. Default: default
	PasswordFormat string `json:"password_format,omitempty"`

	// The scopes a client may ask for. Default: the 28 scopes of the MCP
	// server.
	Scopes []string `json:"scopes,omitempty"`

	router    router
	format    passwordFormat
	scopes    scopeSet
	nextcloud *nextcloud
	store     Store
	vaultAuth *vaultAuth
	limiter   *limiter
	shared    *redisLimiter // nil unless rate_limit has redis
	limits    limits
	zone      string
	addresses *rateLimit // per-address limit; nil unless per_address is set
	logger    *zap.Logger
	audit     *zap.Logger // http.handlers.app_password.audit
	// now is the clock of the rate limit and the records' timestamps.
	now func() time.Time
}

// NextcloudConfig says how to reach Nextcloud's OCS API.
type NextcloudConfig struct {
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

// VaultConfig says where and how secrets are stored.
type VaultConfig struct {
	// Vault address. Default: VAULT_ADDR. One of the two is required.
	Address string `json:"address,omitempty"`
	// Token; placeholders such as {env.VAULT_TOKEN} are replaced at
	// provisioning. Default: VAULT_TOKEN.
	Token string `json:"token,omitempty"`
	// Namespace (Vault Enterprise / HCP). Default: VAULT_NAMESPACE.
	Namespace string `json:"namespace,omitempty"`
	// Mount path of the KV engine. Default: secret
	Mount string `json:"mount,omitempty"`
	// Path of the users' secrets below the mount. Default:
	// nextcloud-mcp/app-passwords
	PathPrefix string `json:"path_prefix,omitempty"`
	// KV engine version, 1 or 2. Default: 2
	KVVersion int `json:"kv_version,omitempty"`
	// Timeout of one Vault request. Default: 10s
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Retries of a request that failed with a 5xx or a network error.
	// Default: 2. Set -1 for none.
	MaxRetries int `json:"max_retries,omitempty"`

	// File holding the token, as a Vault Agent sink writes it. Re-read
	// when it changes.
	TokenFile string `json:"token_file,omitempty"`
	// AppRole login.
	AppRole *AppRoleConfig `json:"approle,omitempty"`
	// Kubernetes service-account login.
	Kubernetes *KubernetesConfig `json:"kubernetes,omitempty"`

	// PEM file of the CA that signed Vault's certificate. Default:
	// VAULT_CACERT.
	CACert string `json:"ca_cert,omitempty"`
	// Directory of PEM CA files. Default: VAULT_CAPATH.
	CAPath string `json:"ca_path,omitempty"`
	// Client certificate and key for mTLS. Default: VAULT_CLIENT_CERT,
	// VAULT_CLIENT_KEY.
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
	// Name to verify Vault's certificate against. Default:
	// VAULT_TLS_SERVER_NAME.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// Skip TLS verification. For labs only.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// AppRoleConfig is an AppRole login: a role id and a secret id.
type AppRoleConfig struct {
	// Role id, or a file holding it.
	RoleID     string `json:"role_id,omitempty"`
	RoleIDFile string `json:"role_id_file,omitempty"`
	// Secret id: literal, in a file (re-read at each login), or in an
	// environment variable. Exactly one.
	SecretID     string `json:"secret_id,omitempty"`
	SecretIDFile string `json:"secret_id_file,omitempty"`
	SecretIDEnv  string `json:"secret_id_env,omitempty"`
	// The secret id is a response-wrapping token to unwrap first.
	Wrapped bool `json:"wrapped,omitempty"`
	// Mount path of the auth method. Default: approle
	Mount string `json:"mount,omitempty"`
}

// KubernetesConfig is a Kubernetes service-account login.
type KubernetesConfig struct {
	// Vault role to log in as. Required.
	Role string `json:"role,omitempty"`
	// Service-account token file. Default:
	// /var/run/secrets/kubernetes.io/serviceaccount/token
	TokenPath string `json:"token_path,omitempty"`
	// Mount path of the auth method. Default: kubernetes
	Mount string `json:"mount,omitempty"`
}

// RateLimitConfig bounds counted attempts per user.
type RateLimitConfig struct {
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

// RedisConfig is the shared rate limiter's Redis.
type RedisConfig struct {
	// redis://[user:password@]host:port/db, or rediss:// for TLS.
	// Placeholders are replaced at provisioning.
	URL string `json:"url,omitempty"`
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

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.app_password",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets the handler up. It reads files (CA certificates) but makes
// no network call: Caddy must start while Vault or Nextcloud is down.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.audit = h.logger.Named("audit")
	h.now = clock
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := h.applyDefaults(); err != nil {
		return err
	}
	repl := caddy.NewReplacer()

	nc := h.Nextcloud
	var err error
	h.nextcloud, err = newNextcloud(repl.ReplaceKnown(nc.URL, ""), time.Duration(nc.Timeout), nc.CACert, nc.InsecureSkipVerify)
	if err != nil {
		return fmt.Errorf("nextcloud: %w", err)
	}

	v := h.Vault
	client, err := newVaultClient(v, repl)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	h.vaultAuth = newVaultAuth(client, v, h.logger)
	h.store = &kvStore{client: client, auth: h.vaultAuth, mount: v.Mount, prefix: v.PathPrefix, version: v.KVVersion}

	rl := h.RateLimit
	h.limits = limits{attempts: rl.Attempts, window: time.Duration(rl.Window), maxUsers: rl.MaxUsers}
	h.zone = rl.Zone
	if h.zone == "" {
		h.zone = repl.ReplaceKnown(nc.URL, "")
	}
	h.limiter = acquireLimiter(h.zone)
	// An in-flight attempt on Redis counts for as long as a request can
	// run: one Nextcloud check and two Vault steps (load, then write).
	lease := time.Duration(nc.Timeout) + 2*time.Duration(v.Timeout)
	if rl.Redis != nil {
		if h.shared, err = newRedisLimiter(rl.Redis, repl, h.zone, h.limiter, lease, h.logger); err != nil {
			return fmt.Errorf("rate_limit: redis: %w", err)
		}
	}
	if pa := rl.PerAddress; pa != nil {
		h.addresses = &rateLimit{
			local: acquireAddressLimiter(h.zone),
			lim:   limits{attempts: pa.Failures, window: time.Duration(pa.Window), maxUsers: rl.MaxUsers},
		}
		if rl.Redis != nil {
			if h.addresses.shared, err = newRedisLimiter(rl.Redis, repl, "addr:"+h.zone, h.addresses.local, lease, h.logger); err != nil {
				return fmt.Errorf("rate_limit: redis: %w", err)
			}
		}
	}
	return nil
}

// applyDefaults fills in what the config leaves out and checks what it
// says, naming the option at fault.
func (h *Handler) applyDefaults() error {
	if h.Prefix == "" {
		h.Prefix = defaultPrefix
	}
	rt, rerr := newRouter(h.Prefix)
	if rerr != nil {
		return fmt.Errorf("prefix: %w", rerr)
	}
	h.router = rt

	switch passwordFormat(h.PasswordFormat) {
	case "", formatDefault:
		h.format = formatDefault
	case formatStrict:
		h.format = formatStrict
	default:
		return fmt.Errorf("password_format: %q is neither default nor strict", h.PasswordFormat)
	}

	scopes := h.Scopes
	if len(scopes) == 0 {
		scopes = defaultScopes()
	}
	var err error
	if h.scopes, err = newScopeSet(scopes); err != nil {
		return fmt.Errorf("scopes: %w", err)
	}

	if h.Nextcloud == nil || h.Nextcloud.URL == "" {
		return errors.New("nextcloud: url is required")
	}
	if h.Nextcloud.Timeout == 0 {
		h.Nextcloud.Timeout = caddy.Duration(defaultTimeout)
	}
	if h.Nextcloud.Timeout < 0 {
		return errors.New("nextcloud: timeout must be positive")
	}

	if h.Vault == nil {
		h.Vault = new(VaultConfig)
	}
	v := h.Vault
	if v.Mount == "" {
		v.Mount = defaultMount
	}
	if v.PathPrefix == "" {
		v.PathPrefix = defaultPathPrefix
	}
	if v.KVVersion == 0 {
		v.KVVersion = defaultKVVersion
	}
	if v.KVVersion != 1 && v.KVVersion != 2 {
		return fmt.Errorf("vault: kv_version must be 1 or 2, not %d", v.KVVersion)
	}
	if v.Timeout == 0 {
		v.Timeout = caddy.Duration(defaultTimeout)
	}
	if v.Timeout < 0 {
		return errors.New("vault: timeout must be positive")
	}
	if v.MaxRetries == 0 {
		v.MaxRetries = defaultRetries
	}
	if err := v.checkAuth(); err != nil {
		return fmt.Errorf("vault: %w", err)
	}

	if h.RateLimit == nil {
		h.RateLimit = new(RateLimitConfig)
	}
	rl := h.RateLimit
	if rl.Attempts == 0 {
		rl.Attempts = defaultAttempts
	}
	if rl.Window == 0 {
		rl.Window = caddy.Duration(defaultWindow)
	}
	if rl.MaxUsers == 0 {
		rl.MaxUsers = defaultMaxUsers
	}
	switch {
	case rl.Attempts < 0:
		return fmt.Errorf("rate_limit: attempts must be positive, not %d", rl.Attempts)
	case rl.Window < 0:
		return fmt.Errorf("rate_limit: window must be positive, not %s", time.Duration(rl.Window))
	case rl.MaxUsers < 0:
		return fmt.Errorf("rate_limit: max_users must be positive, not %d", rl.MaxUsers)
	}
	if pa := rl.PerAddress; pa != nil {
		if pa.Window == 0 {
			pa.Window = caddy.Duration(defaultWindow)
		}
		switch {
		case pa.Failures <= 0:
			return fmt.Errorf("rate_limit: per_address: failures must be positive, not %d", pa.Failures)
		case pa.Window < 0:
			return fmt.Errorf("rate_limit: per_address: window must be positive, not %s", time.Duration(pa.Window))
		}
	}
	return nil
}

// Validate checks what can only be checked after placeholders are
// replaced.
func (h *Handler) Validate() error {
	u, err := url.Parse(h.nextcloud.endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("nextcloud: url %q is not an absolute http(s) URL", h.Nextcloud.URL)
	}
	return nil
}

// Cleanup lets go of the rate-limit state; it lives on if the next config
// uses the same zone.
func (h *Handler) Cleanup() error {
	if h.limiter != nil {
		releaseLimiter(h.zone)
	}
	if h.addresses != nil {
		releaseAddressLimiter(h.zone)
		if h.addresses.shared != nil {
			h.addresses.shared.close()
		}
	}
	if h.vaultAuth != nil {
		h.vaultAuth.close()
		// Each config has its own clients: let their kept-alive
		// connections (and the goroutines serving them) go with it.
		h.vaultAuth.client.CloneConfig().HttpClient.CloseIdleConnections()
	}
	if h.nextcloud != nil {
		h.nextcloud.client.CloseIdleConnections()
	}
	if h.shared != nil {
		h.shared.close() // closed once no attempt of this config still runs
	}
	return nil
}

// ServeHTTP answers the API's routes and passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rt, rawUserID, ok := h.router.match(r)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	h.serveAPI(w, r, rt, rawUserID)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
