package vaultkv

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv/vaultkvtest"
)

// lifetimeWatchers counts the goroutines running a LifetimeWatcher.
func lifetimeWatchers() int {
	buf := make([]byte, 1<<22)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "vault/api.(*LifetimeWatcher).doRenew") {
			n++
		}
	}
	return n
}

// Close ends the token's renewal even while a renewal request is in
// flight: Vault's library gives the request no context, so without care
// the watcher's goroutine would outlive the config, waiting on Vault (or
// on the wait before a retry). Close returns once it has ended.
func TestCloseEndsARenewalInFlight(t *testing.T) {
	v := vaultServer(t)
	proxy := vaultkvtest.NewProxy(t, v.Addr)
	sec, err := v.Root.Auth().Token().CreateWithContext(t.Context(), &api.TokenCreateRequest{TTL: "1h", Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Address: proxy.URL, Token: sec.Auth.ClientToken, Mount: mountKV(t, v, 2)}
	cfg.SetDefaults()
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	before := lifetimeWatchers()
	renewal := proxy.HoldNext("PUT", "/v1/auth/token/renew-self", false)
	_, _ = s.Load(t.Context(), "alice") // the first request starts the token's renewal
	select {
	case <-renewal.Held:
	case <-time.After(10 * time.Second):
		t.Fatal("no renewal reached Vault")
	}
	closed := make(chan struct{})
	go func() {
		_ = s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for the renewal in flight")
	}
	if n := lifetimeWatchers() - before; n != 0 {
		t.Fatalf("%d renewal goroutines outlive Close", n)
	}
}
