package caddyapppw

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"path"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/mcpserver"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/redelivery"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// redeliveryLeaseName names the re-delivery rounds' lease beside the
// sweep's: in Vault <prefix>/_sweep/redelivery, in Redis
// <key_prefix>:redelivery:<mount>/<prefix>.
const redeliveryLeaseName = "redelivery"

// redeliveryHolder names this process in the re-delivery lease. One name
// for every config of the process: after a reload the new config's
// worker goes on under the lease the old one held, instead of waiting
// for the old config's cleanup to give it back.
var redeliveryHolder = redelivery.DefaultHolder()

// redeliveryClient sends the re-deliveries. Its own, so its idle
// connections are not shared with anything a config closes.
var redeliveryClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

// provisionRedelivery builds the worker that delivers again what Vault
// holds and the MCP server did not take, without a network call;
// Provision starts it.
func (h *Handler) provisionRedelivery() error {
	if !h.DeliverToMCP {
		return nil
	}
	base, err := mcpserver.ParseAddress(h.MCPServer)
	if err != nil {
		return err
	}
	h.mcp = mcpserver.Upstream{Base: base, Client: redeliveryClient}
	ws, ok := h.store.(redelivery.WorkerStore)
	if !ok {
		return nil
	}
	var lease sweep.Lease
	if h.vault != nil {
		lease = h.redeliveryLease()
	}
	h.redeliverer, err = redelivery.New(time.Duration(h.RedeliveryInterval), time.Duration(h.RedeliveryGiveUp), redelivery.Deps{
		Store:    ws,
		Deliver:  h.redeliver,
		Lease:    lease,
		Holder:   redeliveryHolder,
		Logger:   h.logger.Named("redelivery"),
		Audit:    h.audit,
		Observer: redeliveryObserver{},
		Now:      h.now,
		Timeout:  deliveryTimeout,
	})
	return err
}

// redeliveryLease is the lease of the re-delivery rounds, where the
// sweep keeps its own: in Redis when the rate limit shares one, else in
// Vault.
func (h *Handler) redeliveryLease() sweep.Lease {
	b := h.vault.Backend()
	if r, ok := h.accounts.(*ratelimit.Redis); ok {
		return &sweep.RedisLease{
			Client: r.Client(),
			Key:    h.RateLimit.Redis.KeyPrefix + ":" + redeliveryLeaseName + ":" + path.Join(b.Mount, b.Prefix),
		}
	}
	return &sweep.VaultLease{
		Client: b.Client, Mount: b.Mount, Path: path.Join(b.Prefix, sweep.LeaseFolder, redeliveryLeaseName),
		KVVersion: b.KVVersion, Do: b.Do,
	}
}

// redeliver hands the change rec owes to the MCP server, as a request
// made from the record alone, the way Astrolabe and an operator would
// have sent it: BasicAuth with the stored password, the stored login name
// in the body. A provisioning sends the whole record (password, login
// name, scopes); a scope change sends the scopes, unless there are none
// to send (null, "no restriction", which only a provisioning sets).
func (h *Handler) redeliver(ctx context.Context, rec *vaultkv.Record) mcpserver.Outcome {
	method, rt := http.MethodPost, routeAppPassword
	var body any
	switch {
	case rec.MCPPending == vaultkv.PendingDelete:
		method = http.MethodDelete
		if rec.Username != nil {
			body = struct {
				Username *string `json:"username"`
			}{rec.Username}
		}
	case rec.MCPPending == vaultkv.PendingPatch && rec.Scopes != nil:
		method, rt = http.MethodPatch, routeUserScopes
		body = struct {
			Scopes   []string `json:"scopes"`
			Username *string  `json:"username,omitempty"`
		}{rec.Scopes, rec.Username}
	default:
		body = struct {
			Username *string  `json:"username,omitempty"`
			Scopes   []string `json:"scopes"`
		}{rec.Username, rec.Scopes}
	}
	var data []byte
	if body != nil {
		data, _ = json.Marshal(body) // strings and string slices always encode
	}
	r, err := http.NewRequestWithContext(ctx, method, "http://mcp"+mcpServerPath(rec.UserID, rt), nil)
	if err != nil {
		return mcpserver.Outcome{Kind: mcpserver.Unreachable, Text: "building the request failed"}
	}
	r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(rec.UserID+":"+rec.AppPassword)))
	r.Header.Set("Accept", "application/json")
	if data != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("User-Agent", "caddy-apppw")
	return mcpserver.Deliver(ctx, h.mcp, r, data)
}

// redeliveryObserver counts re-deliveries and pending changes.
type redeliveryObserver struct{}

func (redeliveryObserver) Redelivered(result string) {
	metrics.redeliveries.WithLabelValues(result).Inc()
}

// Standby zeroes the gauge: only the replica holding the lease counts,
// so alerts can take the maximum over replicas.
func (redeliveryObserver) Standby() { metrics.pendingDeliveries.Set(0) }

func (redeliveryObserver) Pending(n int) {
	metrics.redeliveryRounds.Inc()
	metrics.pendingDeliveries.Set(float64(n))
}
