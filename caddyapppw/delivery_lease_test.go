package caddyapppw

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// With deliver_to_mcp, an attempt in flight on Redis counts for the
// delivery too: its lease is the Nextcloud check, two Vault steps and the
// delivery timeout. The handler is provisioned with short Nextcloud and
// Vault timeouts (300 ms together) and a long delivery timeout; an
// attempt is reserved through the handler's own limiter and never ended,
// as by a request still waiting for the MCP server. Once the 300 ms have
// passed on Redis's clock, the attempt must still count. Failing first:
// with the lease's delivery part made zero (deliveryLease returning 0),
// a second attempt gets through.
func TestDeliveryLengthensTheRedisLease(t *testing.T) {
	srv := redistest.Start(t)
	old := deliveryTimeout
	deliveryTimeout = time.Hour
	t.Cleanup(func() { deliveryTimeout = old })
	const short = 100 * time.Millisecond
	// The handler as its JSON config says it, as Caddy would load it.
	var h Handler
	cfg := fmt.Sprintf(`{"nextcloud": {"url": "http://nextcloud.invalid", "timeout": %d}, "vault": {"timeout": %d},
		"deliver_to_mcp": true, "mcp_server": "http://127.0.0.1:9", "rate_limit": {"attempts": 1, "zone": "lease-%d", "redis": {"url": %q}}}`,
		short, short, bareZones.Add(1), srv.URL())
	if err := json.Unmarshal([]byte(cfg), &h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	oldStore := storeForTests
	storeForTests = func() store { return newMemStore() }
	err := h.Provision(ctx)
	storeForTests = oldStore
	t.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}

	key := ratelimit.AccountKey("alice")
	var first ratelimit.Attempt
	if wait, err := h.accounts.Reserve(&first, key, time.Now()); wait != 0 || err != nil {
		t.Fatalf("first attempt: wait %v, %v", wait, err)
	}
	// The lease is measured on Redis's clock (TIME), which the test
	// cannot move: let the lease without the delivery (300 ms) pass.
	time.Sleep(3 * 3 * short)
	var second ratelimit.Attempt
	defer second.Release()
	wait, err := h.accounts.Reserve(&second, key, time.Now())
	if err != nil || wait != time.Second {
		t.Fatalf("an attempt while the first is still being delivered (its lease without the delivery is over): wait %v, %v; "+
			"want the 1s of an attempt in flight", wait, err)
	}
	first.Release()
}
