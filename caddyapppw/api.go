package caddyapppw

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/redelivery"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// maxSaveAttempts bounds the check-and-set loop of one write. Each lost
// round means another writer for the same user succeeded, and the rate
// limit keeps those few.
const maxSaveAttempts = 32

// apiRequest is one call of the API, parsed once and passed down.
type apiRequest struct {
	r        *http.Request
	route    route
	userID   string // valid once past checkUser
	password string
	res      ratelimit.Attempt // the attempt, per account
	// leftovers: the user has no readable record, but the store holds
	// remains of a deleted one (vaultkv.ErrLeftovers), which DELETE purges.
	leftovers bool
	// next is the handler after this one (the reverse_proxy to the MCP
	// server), and body the request body as read: what a delivery
	// re-sends, since the body can be read only once.
	next caddyhttp.Handler
	body []byte
	// saved is the record as this request left it in Vault (its
	// version included), and login the login name it was checked
	// under (nil: the user id): what a delivery settles and sends.
	saved *vaultkv.Record
	login *string
	// unlock releases the user's delivery lock (lockDelivery), if taken.
	unlock func()
}

// serveAPI answers one request of the API. The log line is written before
// the answer, so a client that has its answer can rely on the line.
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request, rt route, rawUserID string, next caddyhttp.Handler) {
	start := time.Now()
	req := &apiRequest{r: r, route: rt, userID: rawUserID, next: next}

	body, e := h.handleSafely(req)
	status := http.StatusOK
	if e != nil {
		status = e.status
	}
	h.logRequest(r, req, status, e, time.Since(start))
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, status, body)
}

// handleSafely runs handle and turns a panic into a bare 500: the panic's
// value may hold request data, so neither the client nor the log sees it
// (the log gets the stack, which holds no values).
func (h *Handler) handleSafely(req *apiRequest) (body any, e *apiError) {
	defer func() {
		if p := recover(); p != nil {
			h.logger.Error("panic while serving the API", zap.String("route", string(req.route)), zap.Stack("stack"))
			body, e = nil, errInternal
		}
	}()
	return h.handle(req)
}

// handle runs the checks of docs/API.md in their order and then the route.
func (h *Handler) handle(req *apiRequest) (any, *apiError) {
	if req.route == routeInvalidPath {
		return nil, errInvalidPath
	}
	method := req.r.Method
	if !slices.Contains(methods[req.route], method) {
		return nil, errMethodNotAllowed(strings.Join(methods[req.route], ", "))
	}
	if req.route == routeScopes {
		return scopesResponse{Success: true, Scopes: h.scopes.sorted}, nil
	}

	// 1. user_id; 2. BasicAuth. Neither counts toward the rate limit.
	if !validUserID(req.userID) {
		return nil, errInvalidUserID
	}
	user, password, e := basicAuth(req.r)
	if e != nil {
		return nil, e
	}
	if user != req.userID {
		return nil, errUserMismatch
	}
	req.password = password

	// 3. Rate limit: reserve an attempt now, count it or give it back
	// once the outcome is known. The login name joins the attempt before
	// Nextcloud is asked (checkNextcloud).
	// The body, if any, is read before the reservation (preread).
	if method != http.MethodGet {
		preread(req.r)
	}
	defer req.res.Release()
	defer func() {
		if req.unlock != nil {
			req.unlock()
		}
	}()
	if e := h.reserveAttempt(&req.res, h.accounts, ratelimit.AccountKey(req.userID)); e != nil {
		return nil, e
	}

	var body any
	switch {
	case req.route == routeAppPassword && method == http.MethodPost:
		body, e = h.provision(req)
	case req.route == routeAppPassword && method == http.MethodGet:
		body, e = h.status(req)
	case req.route == routeAppPassword && method == http.MethodDelete:
		body, e = h.remove(req)
	case req.route == routeAccess:
		body, e = h.access(req)
	case req.route == routeUserScopes:
		body, e = h.updateScopes(req)
	}
	// 8. With delivery on, the change Vault took goes on to the MCP
	// server, still under this attempt's reservation: a change it does
	// not accept is given back, not counted.
	if e == nil && h.DeliverToMCP && delivered(req.route, method) {
		e = h.deliver(req)
	}
	if (e != nil && e.counted) || (e == nil && method == http.MethodPost) {
		req.res.Commit(h.now())
	}
	return body, e
}

// reserveAttempt adds key to the attempt a under limit. It returns the
// answer that ends the request when key is blocked: 429, or 503 from a
// shared limiter that is down with on_error deny.
func (h *Handler) reserveAttempt(a *ratelimit.Attempt, limit ratelimit.Limiter, key string) *apiError {
	wait, err := limit.Reserve(a, key, h.now())
	if err != nil {
		return errLimiterUnavail.withCause(err)
	}
	if wait > 0 {
		metrics.rateLimited.Inc()
		return errRateLimited(retryAfterSeconds(wait))
	}
	return nil
}

// provision is POST app-password: prove the password, then store it.
func (h *Handler) provision(req *apiRequest) (any, *apiError) {
	// 4. Format, counted: guessing costs attempts even when malformed.
	if !h.format.valid(req.password) {
		return nil, errPasswordFormat
	}
	// 5. Body.
	data, e := readBody(req.r)
	if e != nil {
		return nil, e
	}
	req.body = data
	body, e := parseBody(data, h.scopes)
	if e != nil {
		return nil, e
	}
	// 6. Nextcloud, as the login name Astrolabe sent if any.
	login := req.userID
	if body.username != nil {
		login = *body.username
	}
	if e := h.checkNextcloud(req, login, errInvalidPassword); e != nil {
		return nil, e
	}
	// 7. Vault: optimistic create first, the common case and one round
	// trip; a re-provision keeps the first created_at.
	if e := h.lockDelivery(req); e != nil {
		return nil, e
	}
	ctx, cancel := h.storeContext(req.r.Context())
	defer cancel()
	now := h.now().Unix()
	saved, e := h.save(ctx, req.userID, nil, func(old *vaultkv.Record) (*vaultkv.Record, *apiError) {
		rec := &vaultkv.Record{
			UserID: req.userID, AppPassword: req.password, Username: body.username,
			Scopes: body.scopes, CreatedAt: now, UpdatedAt: now,
		}
		if old != nil {
			rec.Version = old.Version
			if !old.Removed() {
				rec.CreatedAt = old.CreatedAt
			}
			// A change the MCP server still owes is now owed as
			// this provisioning, which covers it, until this
			// delivery settles it: so a crash before then loses
			// nothing.
			if old.MCPPending != vaultkv.PendingNone {
				rec.MCPPending, rec.MCPPendingSince = vaultkv.PendingPost, old.MCPPendingSince
			}
		}
		return rec, nil
	})
	if e != nil {
		return nil, e
	}
	req.saved, req.login = saved, body.username
	return provisionResponse{Success: true, Message: "App password stored for " + req.userID, Scopes: body.scopes}, nil
}

// status is GET app-password.
func (h *Handler) status(req *apiRequest) (any, *apiError) {
	rec, e := h.loadAndAuthenticate(req, errInvalidPassword)
	if e != nil {
		return nil, e
	}
	return statusResponse{Success: true, UserID: req.userID, HasAppPassword: rec != nil && !rec.Removed()}, nil
}

// remove is DELETE app-password.
func (h *Handler) remove(req *apiRequest) (any, *apiError) {
	// The module reads nothing of a DELETE body, but a delivery re-sends
	// it: the MCP server checks the password as the body's username, if
	// any. Read before the checks, as a POST body is.
	if h.DeliverToMCP {
		data, e := readBody(req.r)
		if e != nil {
			return nil, e
		}
		req.body = data
	}
	rec, e := h.loadAndAuthenticate(req, errInvalidCreds)
	if e != nil {
		return nil, e
	}
	if rec == nil && !req.leftovers {
		// With delivery on this is handed on all the same: a user
		// provisioned before the module exists only in the MCP server's
		// database, and the deletion must reach it there.
		return messageResponse{Success: true, Message: "No app password found to delete"}, nil
	}
	if e := h.lockDelivery(req); e != nil {
		return nil, e
	}
	ctx, cancel := h.storeContext(req.r.Context())
	defer cancel()
	if h.DeliverToMCP && rec != nil {
		// The MCP server's DELETE needs a password Nextcloud accepts,
		// so the record stays, marked removed (hidden from the API),
		// until the MCP server has deleted its copy; the delivery then
		// deletes it (settleDelivered), or the re-delivery rounds do.
		marked, err := redelivery.Mark(ctx, h.store, req.userID, vaultkv.PendingDelete, h.now())
		if err != nil {
			return nil, errStorage.withCause(err)
		}
		req.saved, req.login = marked, rec.Username
		return messageResponse{Success: true, Message: "App password deleted for " + req.userID}, nil
	}
	// With leftovers only, the versions an operator deleted could still
	// be undeleted: the user's DELETE purges them and says so.
	if err := h.store.Delete(ctx, req.userID); err != nil {
		return nil, errStorage.withCause(err)
	}
	return messageResponse{Success: true, Message: "App password deleted for " + req.userID}, nil
}

// access is GET access: the stored details without the secret.
func (h *Handler) access(req *apiRequest) (any, *apiError) {
	rec, e := h.loadAndAuthenticate(req, errInvalidCreds)
	if e != nil {
		return nil, e
	}
	if rec == nil || rec.Removed() {
		return accessResponse{Success: true, UserID: req.userID}, nil
	}
	return accessResponse{
		Success: true, UserID: req.userID, Provisioned: true,
		Scopes: rec.Scopes, Username: rec.Username,
		CreatedAt: &rec.CreatedAt, UpdatedAt: &rec.UpdatedAt,
	}, nil
}

// updateScopes is PATCH scopes.
func (h *Handler) updateScopes(req *apiRequest) (any, *apiError) {
	data, e := readBody(req.r)
	if e != nil {
		return nil, e
	}
	req.body = data
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errBodyNotObject
	}
	body, e := parseBody(data, h.scopes)
	if e != nil {
		return nil, e
	}
	if !body.hasScopes {
		return nil, errScopesNotList
	}
	rec, e := h.loadAndAuthenticate(req, errInvalidCreds)
	if e != nil {
		return nil, e
	}
	if rec == nil || rec.Removed() {
		return nil, errNotProvisioned
	}
	if e := h.lockDelivery(req); e != nil {
		return nil, e
	}
	ctx, cancel := h.storeContext(req.r.Context())
	defer cancel()
	now := h.now().Unix()
	saved, e := h.save(ctx, req.userID, rec, func(old *vaultkv.Record) (*vaultkv.Record, *apiError) {
		if old == nil || old.Removed() {
			return nil, errNotProvisioned
		}
		upd := *old
		upd.Scopes, upd.UpdatedAt = body.scopes, now
		return &upd, nil
	})
	if e != nil {
		return nil, e
	}
	req.saved, req.login = saved, saved.Username
	return scopesUpdatedResponse{Success: true, Message: "Scopes updated successfully", Scopes: saved.Scopes}, nil
}

// loadAndAuthenticate loads the user's record (nil if none) and proves the
// request's password: accepted at once if it is the stored one, otherwise
// checked against Nextcloud as the stored login name. The stored password
// is compared in constant time, and against a dummy when there is no
// record, so timing does not tell who has provisioned.
func (h *Handler) loadAndAuthenticate(req *apiRequest, rejected *apiError) (*vaultkv.Record, *apiError) {
	ctx, cancel := h.storeContext(req.r.Context())
	rec, err := h.store.Load(ctx, req.userID)
	cancel()
	if errors.Is(err, vaultkv.ErrNotFound) {
		req.leftovers = errors.Is(err, vaultkv.ErrLeftovers)
		rec, err = nil, nil
	}
	if err != nil {
		return nil, errStorage.withCause(err)
	}

	stored, login := "", req.userID
	if rec != nil {
		stored = rec.AppPassword
		if rec.Username != nil {
			login = *rec.Username
		}
	}
	// An empty stored password (a record written by hand) matches
	// nothing: the request's password then goes to Nextcloud.
	if secretsEqual(stored, req.password) && rec != nil && rec.AppPassword != "" {
		return rec, nil
	}
	if login != req.userID && h.loginBudgetSpent(req, login) {
		login = req.userID
	}
	if e := h.checkNextcloud(req, login, rejected); e != nil {
		return nil, e
	}
	return rec, nil
}

// checkNextcloud proves req's password against Nextcloud, logging in as
// login, and maps the outcome to the API's answers; rejected is the
// route's text for a wrong password. Before Nextcloud is asked, the
// attempt is reserved against login as well (one account, one budget,
// whatever the name it is reached by) and, with per_address, against the
// client's address; a user id mismatch also counts against the uid
// Nextcloud answered with.
func (h *Handler) checkNextcloud(req *apiRequest, login string, rejected *apiError) *apiError {
	if e := h.reserveAttempt(&req.res, h.accounts, ratelimit.AccountKey(login)); e != nil {
		return e
	}
	clientIP := clientAddress(req.r)
	var byAddress ratelimit.Attempt
	defer byAddress.Release()
	if h.addresses != nil {
		if e := h.reserveAttempt(&byAddress, h.addresses, ratelimit.AddressKey(clientIP)); e != nil {
			return e
		}
	}

	start := time.Now()
	err := h.nextcloud.Check(req.r.Context(), login, req.password, req.userID, clientIP)
	var (
		wrongUser    nextcloud.WrongUserError
		statusErr    nextcloud.StatusError
		bodyErr      nextcloud.BodyError
		transportErr nextcloud.TransportError
		result       string
		e            *apiError
	)
	switch {
	case err == nil:
		result = "ok"
	case errors.Is(err, nextcloud.ErrRejected):
		result, e = "rejected", rejected
	case errors.As(err, &wrongUser):
		result, e = "wrong_user", errUIDMismatch
		req.res.CountAlso(ratelimit.AccountKey(wrongUser.UID))
	case errors.As(err, &statusErr):
		result, e = "server_error", errNCServer.withCause(err)
	case errors.As(err, &bodyErr):
		result, e = "bad_response", errNCBadResponse.withCause(err)
	case errors.As(err, &transportErr):
		result, e = "unreachable", errNCUnreachable.withCause(err)
	default:
		result, e = "unreachable", errNCUnreachable.withCause(err)
	}
	metrics.nextcloudDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if e != nil && e.status >= 500 {
		metrics.nextcloudErrors.WithLabelValues(result).Inc()
	}
	if e != nil && e.counted {
		byAddress.Commit(h.now()) // a failed login Nextcloud saw
	}
	return e
}

// save writes a record with check-and-set, retrying on a concurrent write:
// build turns the current record (old, nil for none) into the one to
// write. Starting from old avoids a read before the first try.
func (h *Handler) save(ctx context.Context, userID string, old *vaultkv.Record, build func(old *vaultkv.Record) (*vaultkv.Record, *apiError)) (*vaultkv.Record, *apiError) {
	for range maxSaveAttempts {
		rec, e := build(old)
		if e != nil {
			return nil, e
		}
		// The path is the validated request's user id, never one a
		// stored record names.
		rec.UserID = userID
		err := h.store.Save(ctx, rec)
		if err == nil {
			return rec, nil
		}
		if !errors.Is(err, vaultkv.ErrConflict) {
			return nil, errStorage.withCause(err)
		}
		old, err = h.store.Load(ctx, userID)
		if errors.Is(err, vaultkv.ErrNotFound) {
			old, err = nil, nil
		}
		if err != nil {
			return nil, errStorage.withCause(err)
		}
	}
	return nil, errStorage.withCause(errors.New("too many concurrent writes for one user"))
}

// storeContext bounds all Vault work of one request by the Vault timeout.
// It does not end when the client goes away: a write sequence that has
// started (write, then destroy the old versions) runs to its end.
func (h *Handler) storeContext(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(parent), time.Duration(h.Vault.Timeout))
}

// logRequest writes the one line each API request gets, the audit line of
// the writes, and the request metric. It names the route, never the path,
// and never a header: the password travels in Authorization.
func (h *Handler) logRequest(r *http.Request, req *apiRequest, status int, e *apiError, latency time.Duration) {
	outcome := "ok"
	if e != nil {
		outcome = e.outcome
	}
	method := r.Method
	if !slices.Contains(knownMethods, method) {
		method = "other" // clients choose methods: keep the label set bounded
	}
	metrics.requests.WithLabelValues(string(req.route), method, outcome).Inc()
	userID := req.userID
	if !validUserID(userID) {
		userID = "" // never log raw attacker input
	}
	clientIP, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	lf := getLogFields()
	defer putLogFields(lf)
	fields := append(lf[:0],
		zap.String("route", string(req.route)),
		zap.String("method", method),
		zap.String("user_id", userID),
		zap.String("outcome", outcome),
		zap.Int("status", status),
		zap.String("client_ip", clientIP),
		zap.Duration("latency", latency),
	)
	if isAuditable(req.route, r.Method) {
		h.audit.Info(auditMessage(req.route, r.Method), fields[:6]...)
	}
	switch {
	case status >= 500:
		if e != nil && e.cause != nil {
			fields = append(fields, zap.String("cause", e.cause.Error()))
		}
		h.logger.Error("app password request", fields...)
	case status >= 400:
		h.logger.Warn("app password request", fields...)
	default:
		h.logger.Info("app password request", fields...)
	}
}

// knownMethods are the methods the API names; others log as "other".
var knownMethods = []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPatch}

// isAuditable reports the requests that change a stored secret: an
// audit trail records each of them, whatever its outcome.
func isAuditable(rt route, method string) bool {
	return rt == routeAppPassword && (method == http.MethodPost || method == http.MethodDelete) ||
		rt == routeUserScopes && method == http.MethodPatch
}

func auditMessage(rt route, method string) string {
	switch {
	case rt == routeUserScopes:
		return "scope change"
	case method == http.MethodDelete:
		return "deletion"
	}
	return "provisioning"
}
