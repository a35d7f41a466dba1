package caddyapppw

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-apppw/caddy-apppw/internal/mcpserver"
	"github.com/caddy-apppw/caddy-apppw/internal/redelivery"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// deliveryTimeout bounds one delivery to the MCP server. The MCP server
// checks the password against Nextcloud itself before it stores anything
// (with a 10 s timeout of its own), then writes its database; the rest is
// a margin for the connection. Caddy's reverse_proxy has no timeout for
// the answer by default, so without this a hung MCP server would hold the
// request, and its rate-limit reservation, for ever. A variable only so
// that a test can wait less; it is read when a config is provisioned and
// at each delivery.
var deliveryTimeout = 15 * time.Second

// errMCPNotAccepted answers a change that Vault took but the MCP server
// refused or never received. Not counted: the user did nothing wrong, and
// a retry must find the attempt free.
var errMCPNotAccepted = &apiError{status: http.StatusBadGateway, msg: "MCP server did not accept the change", outcome: "mcp_not_accepted"}

// delivered reports the requests that change what the MCP server holds:
// those are handed on when deliver_to_mcp is on. GET, access and the
// scopes list change nothing and are answered by the module alone.
func delivered(rt route, method string) bool {
	return rt == routeAppPassword && (method == http.MethodPost || method == http.MethodDelete) ||
		rt == routeUserScopes && method == http.MethodPatch
}

// change is the pending change a request makes, as a record's mark.
func change(rt route, method string) vaultkv.Pending {
	switch {
	case rt == routeUserScopes:
		return vaultkv.PendingPatch
	case method == http.MethodDelete:
		return vaultkv.PendingDelete
	}
	return vaultkv.PendingPost
}

// lockDelivery takes the user's delivery lock (redelivery.Lock) for the
// rest of the request, with delivery on: from the Vault write through the
// delivery to the settling, no re-delivery round of this process hands
// the MCP server the user's older state in between. It waits at most as
// long as a change can take; past that the answer is 503.
func (h *Handler) lockDelivery(req *apiRequest) *apiError {
	if !h.DeliverToMCP || req.unlock != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(req.r.Context(), deliveryTimeout+2*time.Duration(h.Vault.Timeout))
	defer cancel()
	unlock, err := redelivery.Lock(ctx, req.userID)
	if err != nil {
		return errStorage.withCause(fmt.Errorf("waiting for the user's delivery in progress: %w", err))
	}
	req.unlock = unlock
	return nil
}

// deliveryLease is how much longer an attempt can run with delivery on:
// the rate limit's reservation on Redis must outlive the request.
func (h *Handler) deliveryLease() time.Duration {
	if !h.DeliverToMCP {
		return 0
	}
	return deliveryTimeout
}

// warnAboutTheMCPServersLimit logs, at provisioning, a rate_limit that lets
// more provisions through than the MCP server's own limit accepts: the
// surplus would be stored in Vault but answered 502.
func (h *Handler) warnAboutTheMCPServersLimit() {
	if !h.DeliverToMCP {
		return
	}
	if msg := mcpserver.LimitWarning(h.RateLimit.Attempts, time.Duration(h.RateLimit.Window)); msg != "" {
		h.logger.Warn(msg)
	}
}

// deliver hands a change that passed every check and is in Vault on to the
// next handler — the reverse_proxy to the MCP server — and turns its
// outcome into the module's: nil when the MCP server accepted it (or, for
// a DELETE, refused it with 401: see below), else errMCPNotAccepted. It
// writes the one log line of the delivery and counts it.
//
// Then it brings the record in line with what happened: an accepted
// change settles the record's mark (redelivery.Settle), a deletion ends
// with the record's removal from Vault, and a change the MCP server did
// not take is marked on the record, for the re-delivery rounds.
//
// The MCP server is given until deliveryTimeout, whether or not the client
// is still there: Vault has the change already, and the MCP server should
// too.
func (h *Handler) deliver(req *apiRequest) *apiError {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.r.Context()), deliveryTimeout)
	defer cancel()
	out := mcpserver.Deliver(ctx, req.next, mcpServerRequest(req), withLogin(req.body, req.login))
	metrics.deliveries.WithLabelValues(string(req.route), out.Kind.String()).Inc()

	// A DELETE refused with 401: the MCP server checks the password
	// against Nextcloud before it deletes, and Nextcloud no longer accepts
	// it (the user revoked the token first). Its copy is as dead as the
	// token; the MCP server drops it at its own next check. The user's
	// deletion from Vault stands, and a 502 would ask for a retry that
	// cannot succeed.
	kept := req.r.Method == http.MethodDelete && out.Kind == mcpserver.Refused && out.Status == http.StatusUnauthorized

	fields := []zap.Field{
		zap.String("route", string(req.route)),
		zap.String("method", req.r.Method),
		zap.String("user_id", req.userID),
		zap.String("mcp_outcome", out.Kind.String()),
		zap.Int("mcp_status", out.Status),
		zap.String("mcp_text", out.Text),
		zap.Duration("latency", time.Since(start)),
	}
	switch {
	case out.Kind == mcpserver.Accepted:
		h.logger.Info("delivered to the MCP server", fields...)
		return h.settleDelivered(req)
	case kept:
		h.logger.Warn("the MCP server kept its copy: it refused the deletion with 401 because Nextcloud "+
			"did not accept the password; it drops the password at its own next check against Nextcloud", fields...)
		return h.settleDelivered(req)
	}
	h.logger.Warn("the MCP server did not accept the change", fields...)
	h.markUndelivered(req)
	return errMCPNotAccepted.withCause(fmt.Errorf("MCP server: %s, status %d: %s", out.Kind, out.Status, out.Text))
}

// settleDelivered ends a change the MCP server took: a deletion removes
// the record it kept until now, another change settles the record's mark.
func (h *Handler) settleDelivered(req *apiRequest) *apiError {
	if req.saved == nil {
		return nil // nothing in Vault: a deletion only the MCP server's table needed
	}
	ctx, cancel := h.storeContext(req.r.Context())
	defer cancel()
	if req.saved.Removed() {
		// Only the marked record: a provisioning since then keeps
		// its new password, and owes its own change.
		err := h.store.DeleteIfUnchanged(ctx, req.userID, req.saved.Version)
		if err != nil && !isGone(err) {
			h.kickRedelivery()
			return errStorage.withCause(err)
		}
		return nil
	}
	if err := redelivery.Settle(ctx, h.store, req.userID, req.saved.Version, change(req.route, req.r.Method), h.now()); err != nil {
		// The MCP server has the change; the record may still say it
		// owes one, which costs a redundant re-delivery, no more.
		h.logger.Warn("settling the record after a delivery failed", zap.String("user_id", req.userID), zap.Error(err))
	}
	return nil
}

// markUndelivered marks the change on the record, so the re-delivery
// rounds take it from here. A deletion was marked before it was
// delivered.
func (h *Handler) markUndelivered(req *apiRequest) {
	if req.saved == nil || req.saved.Removed() {
		h.kickRedelivery()
		return
	}
	ctx, cancel := h.storeContext(req.r.Context())
	defer cancel()
	if _, err := redelivery.Mark(ctx, h.store, req.userID, change(req.route, req.r.Method), h.now()); err != nil {
		h.logger.Error("marking an undelivered change failed: it is delivered again only with the user's next change",
			zap.String("user_id", req.userID), zap.Error(err))
		return
	}
	h.kickRedelivery()
}

func (h *Handler) kickRedelivery() {
	if h.redeliverer != nil {
		h.redeliverer.Kick()
	}
}

// mcpServerRequest is the request to hand on: the client's, at the MCP
// server's own path for the route. The MCP server serves its routes at
// /api/v1 and has no prefix option, so under another prefix the path is
// rewritten; under /api/v1 it is the client's path, spelled canonically.
// The user id is the one the module validated.
func mcpServerRequest(req *apiRequest) *http.Request {
	u := *req.r.URL
	u.Path, u.RawPath = mcpServerPath(req.userID, req.route), ""
	r := req.r.WithContext(req.r.Context())
	r.URL = &u
	r.RequestURI = u.RequestURI()
	return r
}

// mcpServerPath is the MCP server's path of a user's route.
func mcpServerPath(userID string, rt route) string {
	action := "app-password"
	if rt == routeUserScopes {
		action = "scopes"
	}
	return mcpServerPrefix + "/users/" + userID + "/" + action
}
