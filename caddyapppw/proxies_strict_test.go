package caddyapppw

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The two shapes of a Caddy behind a proxy that appends to
// X-Forwarded-For, the client having written its own first entry. With
// trusted_proxies alone, Caddy takes the leftmost address, the client's
// choice: per_address is no limit and Nextcloud's throttle counts
// addresses the attacker makes up. With trusted_proxies_strict, Caddy
// takes the rightmost address it does not trust, the one the proxy wrote.

// strictProxyWarning is the start of the warning a config gets that turns
// per_address on where Caddy reads X-Forwarded-For from the left.
const strictProxyWarning = "per_address: this server does not set trusted_proxies_strict"

// TestPerAddressStrictProxy: with trusted_proxies_strict, the address the
// trusted proxy appended is the client's, whatever the client wrote
// before it: three wrong passwords exhaust it under ever new made-up
// addresses, and Nextcloud sees the real one. No warning.
func TestPerAddressStrictProxy(t *testing.T) {
	e := newEnv(t, "rate_limit {\n per_address 3 1h\n }")
	e.globals = "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict\n\t}"
	before := len(e.logLines()) // newEnv's first config was not strict
	e.load(e.caddyfile(e.settings))
	e.nc.DisableBruteForceProtection()
	const client = "203.0.113.7"
	for i := range 3 {
		id := fmt.Sprintf("s%02d", i)
		e.callFrom(fmt.Sprintf("198.51.100.%d, %s", i+1, client), "POST", "/api/v1/users/"+id+"/app-password", id+":"+alicePW2, "").
			expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	e.expectBlocked(e.callFrom("198.51.100.99, "+client, "POST", "/api/v1/users/s99/app-password", "s99:"+alicePW2, ""), e.nc.Calls(), true)
	if got := e.nc.ForwardedFor(); !slices.Equal(got, []string{client, client, client}) {
		t.Errorf("Nextcloud saw X-Forwarded-For %q, want the proxy's %s", got, client)
	}
	for _, l := range e.logLines()[before:] {
		if msg, _ := l["msg"].(string); strings.HasPrefix(msg, strictProxyWarning) {
			t.Errorf("warned with trusted_proxies_strict set: %v", l)
		}
	}
}

// TestPerAddressWarnsWithoutStrictProxy: per_address on a server without
// trusted_proxies_strict is warned about at provisioning, saying what to
// set; the bypass it warns of is shown: each made-up leftmost address is
// a new budget.
func TestPerAddressWarnsWithoutStrictProxy(t *testing.T) {
	e := newEnv(t, "rate_limit {\n per_address 3 1h\n }")
	e.trustLoopbackProxy()
	e.nc.DisableBruteForceProtection()
	var warned int
	for _, l := range e.logLines() {
		if msg, _ := l["msg"].(string); strings.HasPrefix(msg, strictProxyWarning) {
			warned++
			if l["level"] != "warn" || !strings.Contains(msg, "trusted_proxies_strict") || !strings.Contains(msg, "leftmost") {
				t.Errorf("warning %v", l)
			}
		}
	}
	if warned == 0 {
		t.Fatalf("no warning at provisioning: per_address without trusted_proxies_strict")
	}
	for i := range 5 {
		id := fmt.Sprintf("n%02d", i)
		e.callFrom(fmt.Sprintf("198.51.100.%d, 203.0.113.7", i+1), "POST", "/api/v1/users/"+id+"/app-password", id+":"+alicePW2, "").
			expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	// A config without per_address is not warned about.
	e.settings = ""
	before := len(e.logLines())
	e.load(e.caddyfile(""))
	for _, l := range e.logLines()[before:] {
		if msg, _ := l["msg"].(string); strings.HasPrefix(msg, strictProxyWarning) {
			t.Errorf("warned without per_address: %v", l)
		}
	}
}
