package caddyapppw

import (
	"net"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// limiterKey is the key an account name is limited under: the path's user
// id, a login name, or a uid Nextcloud answered with. Nextcloud matches
// logins without regard to ASCII case, so "Alice" and "alice" are one
// account to it and share one count here. Only ASCII is folded, as
// Nextcloud does.
func limiterKey(name string) string {
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

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

// addressKey is the per-address limiter's key for a client IP: an IPv4
// address as is, an IPv6 address by its /64, the block one subscriber
// usually holds whole (keying single IPv6 addresses would give one client
// 2^64 budgets).
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}
