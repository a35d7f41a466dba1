// Package mcpserver hands each change the module accepted on to the
// Nextcloud MCP server, through the MCP server's own app-password route.
//
// The MCP server as deployed today keeps app passwords only in its own
// database, written by its own copy of the route, and indexes only the
// users it finds there. With the module in front of it, a change that
// reached only Vault would leave the MCP server's background sync blind
// to that user. So after the module's checks and the Vault write passed,
// the handler re-sends the original request to the next handler — the
// reverse_proxy to the MCP server — and reads the answer itself instead of
// passing it to the client.
//
// The package knows nothing of Caddy's HTTP packages: the next handler is
// anything with caddyhttp.Handler's method set.
package mcpserver

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"math"
	"strings"
	"time"
)

// Config is the delivery switch of the app_password handler. The handler
// embeds it, so the field sits at the handler's top level in JSON, as
// `deliver_to_mcp`.
type Config struct {
	// Hand every change that succeeded in Vault (POST, DELETE, PATCH
	// scopes) on to the next handler, normally the reverse_proxy to the
	// MCP server, and answer 200 only when the MCP server accepted it too.
	// Turn it on for an MCP server that keeps app passwords in its own
	// database (upstream nextcloud-mcp-server up to at least v0.181); leave
	// it off for one that reads them from Vault. Default: off.
	DeliverToMCP bool `json:"deliver_to_mcp,omitempty"`

	// The MCP server's own address (http://host:port, or host:port), for
	// re-deliveries: a change Vault took but the MCP server did not is
	// delivered again in the background, straight to this address,
	// until the MCP server holds what Vault holds. Required with
	// deliver_to_mcp: normally the reverse_proxy's upstream.
	MCPServer string `json:"mcp_server,omitempty"`

	// How often the records that owe the MCP server a change are looked
	// for and delivered again (default 30s). A failed delivery also
	// starts a round at once. Each round lists the users and reads each
	// record once: with very many users, raise it.
	RedeliveryInterval caddy.Duration `json:"redelivery_interval,omitempty"`

	// How long a deletion the MCP server cannot be reached for may wait
	// (default 24h). The record, password included, is kept in Vault
	// (hidden from the API) while the deletion is owed, since the MCP
	// server's DELETE needs a password Nextcloud accepts; past this it is
	// deleted from Vault anyway and the MCP server drops its copy at its
	// own next check against Nextcloud.
	RedeliveryGiveUp caddy.Duration `json:"redelivery_give_up,omitempty"`
}

// Defaults of the re-delivery settings.
const (
	DefaultRedeliveryInterval = 30 * time.Second
	DefaultRedeliveryGiveUp   = 24 * time.Hour
	// minRedeliveryInterval keeps a mistyped interval from turning the
	// rounds into a scan of Vault without pause.
	minRedeliveryInterval = 100 * time.Millisecond
)

// SetDefaults fills in the zero values.
func (c *Config) SetDefaults() {
	if c.RedeliveryInterval == 0 {
		c.RedeliveryInterval = caddy.Duration(DefaultRedeliveryInterval)
	}
	if c.RedeliveryGiveUp == 0 {
		c.RedeliveryGiveUp = caddy.Duration(DefaultRedeliveryGiveUp)
	}
}

// Validate checks the settings: with delivery on, the MCP server's
// address is required.
func (c *Config) Validate() error {
	if !c.DeliverToMCP {
		return nil
	}
	if c.MCPServer == "" {
		return fmt.Errorf("deliver_to_mcp needs the MCP server's address, for re-deliveries in the background " +
			"(e.g. deliver_to_mcp http://127.0.0.1:8000, the reverse_proxy's upstream)")
	}
	if _, err := ParseAddress(c.MCPServer); err != nil {
		return fmt.Errorf("deliver_to_mcp: %w", err)
	}
	if time.Duration(c.RedeliveryInterval) < minRedeliveryInterval {
		return fmt.Errorf("deliver_to_mcp: interval must be at least %s", minRedeliveryInterval)
	}
	if c.RedeliveryGiveUp <= 0 {
		return fmt.Errorf("deliver_to_mcp: give_up must be positive")
	}
	return nil
}

// The MCP server's own limiter: per user id and process, counted attempts
// (failed checks and successful provisions) per sliding window.
const (
	ServerLimit  = 5
	ServerWindow = time.Hour
)

// LimitWarning returns a warning for the log when the module's per-user
// limit (attempts per window) lets more provisions through in an hour
// than the MCP server's 5, or "" when it does not. The module delivers
// only provisions it accepted and counted, so its own limit bounds what
// reaches the MCP server; above the MCP server's, the surplus is refused
// there with 429 and answered 502 here although Vault took it.
//
// Within any hour a sliding window of length w admits at most
// attempts × ⌈1h / w⌉ (a window of an hour or more admits at most
// attempts), which is what is compared.
func LimitWarning(attempts int, window time.Duration) string {
	if attempts <= 0 || window <= 0 {
		return ""
	}
	perHour := uint64(attempts)
	if window < ServerWindow {
		windows := uint64((ServerWindow + window - 1) / window)
		if perHour > math.MaxUint64/windows {
			perHour = math.MaxUint64
		} else {
			perHour *= windows
		}
	}
	if perHour <= ServerLimit {
		return ""
	}
	return fmt.Sprintf("rate_limit %d per %s lets up to %d provisions per user through in an hour, "+
		"but the MCP server accepts %d per %s: with deliver_to_mcp on, the surplus is stored in Vault "+
		"and answered 502 because the MCP server refuses it (429); set rate_limit to at most %d per %s",
		attempts, short(window), perHour, ServerLimit, short(ServerWindow), ServerLimit, short(ServerWindow))
}

// short writes a duration as a Caddyfile would: 1h, not 1h0m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
