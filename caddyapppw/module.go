// Package caddyapppw is a Caddy HTTP handler that serves the Nextcloud MCP
// server's app-password API: it proves each app password against
// Nextcloud and keeps it in HashiCorp Vault, where the MCP server reads it.
// Every other request passes to the next handler untouched.
package caddyapppw

import (
	"cmp"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-apppw/caddy-apppw/internal/mcpserver"
	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/redelivery"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// defaultPrefix is where the API lives by default, as in the MCP server.
// Each collaborator's config holds its own defaults.
const defaultPrefix = "/api/v1"

// clock is where handlers read the time; tests replace it before loading a
// config.
var clock = time.Now

// storeForTests, when set, gives Provision the store to use instead of
// building the Vault one. It is nil in production; the handler's tests
// set it to run every API behaviour against a memory store, in seconds
// and without the dev Vault (a 10–20 minute build on a fresh machine).
// Everything else Provision does, and the whole request path, is the
// production code.
var storeForTests func() store

// Handler serves the app-password API of the Nextcloud MCP server.
type Handler struct {
	// Path prefix of the API. Default: /api/v1
	Prefix string `json:"prefix,omitempty"`

	// Nextcloud, against which app passwords are proven. Required.
	Nextcloud *nextcloud.Config `json:"nextcloud,omitempty"`

	// Vault, where the app passwords are kept.
	Vault *vaultkv.Config `json:"vault,omitempty"`

	// Per-user rate limit of attempts.
	RateLimit *ratelimit.Config `json:"rate_limit,omitempty"`

	// "default" accepts [A-Za-z0-9-]{20,256}; "strict" accepts only
	// Nextcloud's dashed 5×5 form. Default: default
	PasswordFormat string `json:"password_format,omitempty"`

	// The scopes a client may ask for. Default: the 28 scopes of the MCP
	// server.
	Scopes []string `json:"scopes,omitempty"`

	// deliver_to_mcp: hand each change on to the MCP server (see
	// mcpserver.Config).
	mcpserver.Config

	// The periodic sweep of stored passwords Nextcloud no longer
	// accepts. Default: every hour, 2 checks per second.
	Sweep *sweep.Config `json:"sweep,omitempty"`

	router    router
	format    passwordFormat
	scopes    scopeSet
	nextcloud *nextcloud.Client
	vault     *vaultkv.Store    // nil when storeForTests is set
	store     store             // vault, or the tests' store
	accounts  ratelimit.Limiter // the per-account limit
	addresses ratelimit.Limiter // the per-address limit; nil unless per_address is set
	logger    *zap.Logger
	audit     *zap.Logger // http.handlers.app_password.audit
	// now is the clock of the rate limit and the records' timestamps.
	now     func() time.Time
	sweeper *sweep.Sweeper // nil with the tests' memory store
	// redeliverer delivers again what Vault holds and the MCP server
	// did not take; nil without deliver_to_mcp or with the memory store.
	redeliverer *redelivery.Worker
	// mcp is the MCP server's own address, for re-deliveries.
	mcp mcpserver.Upstream
	// noSchedule keeps Provision from starting the sweeper, and
	// commandLogger replaces the logger of a context without a config
	// (a development logger): the commands provision a handler to use it
	// once.
	noSchedule    bool
	commandLogger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.app_password",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets the handler up. It reads files (CA certificates) but makes
// no network call: Caddy must start while Vault or Nextcloud is down. Each
// collaborator builds itself from its own config; Provision only wires
// them.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = cmp.Or(h.commandLogger, ctx.Logger())
	h.audit = h.logger.Named("audit")
	h.now = clock
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := h.configure(); err != nil {
		return err
	}
	h.warnAboutTheMCPServersLimit()
	repl := caddy.NewReplacer()

	var err error
	if h.nextcloud, err = nextcloud.New(h.Nextcloud, repl); err != nil {
		return fmt.Errorf("nextcloud: %w", err)
	}

	if storeForTests != nil {
		h.store = storeForTests()
	} else {
		h.vault, err = vaultkv.New(h.Vault, vaultkv.Options{Replacer: repl, Logger: h.logger, Observe: observeVault, Now: clock})
		if err != nil {
			return fmt.Errorf("vault: %w", err)
		}
		h.store = h.vault
	}

	rl := h.RateLimit
	h.accounts, h.addresses, err = rl.Open(ratelimit.Options{
		Zone: cmp.Or(rl.Zone, repl.ReplaceKnown(h.Nextcloud.URL, "")),
		// An in-flight attempt on Redis counts for as long as a request
		// can run once reserved: one Nextcloud check, two Vault steps
		// (load, then write) and, with deliver_to_mcp, the delivery. The
		// body was read before (preread): its pace is the client's.
		Lease:      time.Duration(h.Nextcloud.Timeout) + 2*time.Duration(h.Vault.Timeout) + h.deliveryLease(),
		Replacer:   repl,
		Logger:     h.logger,
		OnFallback: metrics.rateLimitFallbacks.Inc,
	})
	if err != nil {
		return fmt.Errorf("rate_limit: %w", err)
	}
	h.warnAboutLeftmostAddresses(ctx)

	if err := h.provisionSweep(); err != nil {
		return err
	}
	if h.sweeper != nil && !h.noSchedule {
		h.sweeper.Start()
	}
	if err := h.provisionRedelivery(); err != nil {
		return err
	}
	if h.redeliverer != nil && !h.noSchedule {
		h.redeliverer.Start()
	}
	return nil
}

// configure checks the handler's own options and has each collaborator's
// config fill in its defaults and check itself. Errors name the option at
// fault, prefixed with its block.
func (h *Handler) configure() error {
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

	if h.Nextcloud == nil {
		h.Nextcloud = new(nextcloud.Config)
	}
	h.Nextcloud.SetDefaults()
	if err := h.Nextcloud.Validate(); err != nil {
		return fmt.Errorf("nextcloud: %w", err)
	}

	if h.Vault == nil {
		h.Vault = new(vaultkv.Config)
	}
	h.Vault.SetDefaults()
	if err := h.Vault.Validate(); err != nil {
		return fmt.Errorf("vault: %w", err)
	}

	if h.RateLimit == nil {
		h.RateLimit = new(ratelimit.Config)
	}
	h.RateLimit.SetDefaults()
	if err := h.RateLimit.Validate(); err != nil {
		return fmt.Errorf("rate_limit: %w", err)
	}

	h.Config.SetDefaults()
	if err := h.Config.Validate(); err != nil {
		return err
	}

	if h.Sweep == nil {
		h.Sweep = new(sweep.Config)
	}
	h.Sweep.SetDefaults()
	if err := h.Sweep.Validate(); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return nil
}

// Cleanup lets go of what the config holds: each collaborator closes
// itself. Rate-limit state lives on if the next config uses the same
// zone, and a Redis client while an attempt still runs on it.
func (h *Handler) Cleanup() error {
	// The sweeper first: a round in progress uses the store, the
	// Nextcloud client and the Redis client of the limiter.
	if h.sweeper != nil {
		h.sweeper.Stop()
	}
	if h.redeliverer != nil {
		h.redeliverer.Stop()
	}
	if h.accounts != nil {
		_ = h.accounts.Close()
	}
	if h.addresses != nil {
		_ = h.addresses.Close()
	}
	if h.vault != nil {
		_ = h.vault.Close()
	}
	if h.nextcloud != nil {
		_ = h.nextcloud.Close()
	}
	return nil
}

// ServeHTTP answers the API's routes and passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rt, rawUserID, ok := h.router.match(r)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	h.serveAPI(w, r, rt, rawUserID, next)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
