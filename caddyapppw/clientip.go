package caddyapppw

import (
	"context"
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// clientAddress is the client's IP as Caddy determined it: the client_ip
// variable, which honours the server's trusted_proxies. Outside a Caddy
// server (a handler called directly) it is the connection's peer.
func clientAddress(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// warnAboutLeftmostAddresses logs, at provisioning, per_address on a
// server that reads X-Forwarded-For from the left. Behind a proxy that
// appends to the header (nginx's $proxy_add_x_forwarded_for, Caddy's own
// reverse_proxy, most load balancers), the leftmost entry is whatever the
// client wrote: Caddy's default takes it as the client address when the
// peer is in trusted_proxies, so each made-up address would be a new
// per_address budget, and Nextcloud's throttle would count it too. With
// trusted_proxies_strict Caddy takes the rightmost address it does not
// trust, the one the proxy wrote. Without trusted_proxies, strict changes
// nothing and silences this.
func (h *Handler) warnAboutLeftmostAddresses(ctx context.Context) {
	if h.addresses == nil {
		return
	}
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || srv.TrustedProxiesStrict > 0 {
		return
	}
	h.logger.Warn("per_address: this server does not set trusted_proxies_strict, so behind a trusted proxy " +
		"Caddy takes the client address from the leftmost X-Forwarded-For entry, which the client writes: " +
		"each made-up address would be a new per_address budget. " +
		"Set trusted_proxies_strict in the global servers options (harmless without trusted_proxies)")
}
