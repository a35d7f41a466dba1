package caddyapppw

import (
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// apiError is an answer of the API that is not a success: the status, the
// text the client is shown, and what the log gets. Every failure of a
// request becomes one of these, so the mapping from cause to status and
// text of docs/API.md lives here and nowhere else.
type apiError struct {
	status int
	// msg is the client-facing text. It never carries input or an internal
	// error text.
	msg string
	// outcome is a short, fixed token for logs and metric labels.
	outcome string
	// cause is the internal error, for the log only.
	cause error
	// counted marks the failures that use up one of the user's attempts:
	// a wrong password or format, never an outage or a malformed body.
	counted bool

	retryAfter  int      // 429: seconds, also sent as Retry-After
	validScopes []string // "Invalid scopes": the accepted names
	allow       string   // 405: the Allow header

	// body is the answer's body when it was encoded ahead (the shared
	// failures below, encoded once at start, and the 429s kept by
	// errRateLimited); nil: encode it when answering. retryAfterText is
	// the Retry-After header of a kept 429.
	body           []byte
	retryAfterText string
}

func (e *apiError) Error() string { return e.msg }

// withCause returns a copy of e that logs cause.
func (e *apiError) withCause(cause error) *apiError {
	c := *e
	c.cause = cause
	return &c
}

// The failures of docs/API.md, by check order. Values are shared and never
// mutated; withCause copies.
var (
	errInvalidUserID   = &apiError{status: http.StatusBadRequest, msg: "Invalid user_id", outcome: "invalid_user_id"}
	errMissingAuth     = &apiError{status: http.StatusUnauthorized, msg: "Missing BasicAuth credentials", outcome: "missing_credentials"}
	errBadAuthFormat   = &apiError{status: http.StatusUnauthorized, msg: "Invalid BasicAuth format", outcome: "invalid_credentials_format"}
	errUserMismatch    = &apiError{status: http.StatusForbidden, msg: "Username does not match path user_id", outcome: "username_mismatch"}
	errPasswordFormat  = &apiError{status: http.StatusBadRequest, msg: "Invalid app password format", outcome: "invalid_password_format", counted: true}
	errBodyTooLarge    = &apiError{status: http.StatusRequestEntityTooLarge, msg: "Request body too large", outcome: "body_too_large"}
	errInvalidJSON     = &apiError{status: http.StatusBadRequest, msg: "Invalid JSON body", outcome: "invalid_body"}
	errBodyNotObject   = &apiError{status: http.StatusBadRequest, msg: "Request body must be a JSON object", outcome: "invalid_body"}
	errScopesNotList   = &apiError{status: http.StatusBadRequest, msg: "scopes must be a list of strings", outcome: "invalid_body"}
	errUsernameInvalid = &apiError{status: http.StatusBadRequest, msg: "username must be a string of at most 256 characters", outcome: "invalid_body"}
	errInvalidPassword = &apiError{status: http.StatusUnauthorized, msg: "Invalid app password", outcome: "invalid_password", counted: true}
	errInvalidCreds    = &apiError{status: http.StatusUnauthorized, msg: "Invalid credentials", outcome: "invalid_password", counted: true}
	errUIDMismatch     = &apiError{status: http.StatusForbidden, msg: "User ID mismatch", outcome: "user_id_mismatch", counted: true}
	errNCServer        = &apiError{status: http.StatusBadGateway, msg: "Nextcloud returned a server error", outcome: "nextcloud_error"}
	errNCUnreachable   = &apiError{status: http.StatusBadGateway, msg: "Failed to validate credentials", outcome: "nextcloud_unreachable"}
	errNCBadResponse   = &apiError{status: http.StatusBadGateway, msg: "Unexpected response from Nextcloud", outcome: "nextcloud_bad_response"}
	errStorage         = &apiError{status: http.StatusServiceUnavailable, msg: "Secret storage unavailable", outcome: "storage_unavailable"}
	errNotProvisioned  = &apiError{status: http.StatusNotFound, msg: "No app password provisioned for this user", outcome: "not_provisioned"}
	errLimiterUnavail  = &apiError{status: http.StatusServiceUnavailable, msg: "Rate limiter unavailable", outcome: "rate_limiter_unavailable"}
	errInternal        = &apiError{status: http.StatusInternalServerError, msg: "Internal server error", outcome: "internal_error"}

	// errMethodNotAllowedBase is what every 405 shares; errMethodNotAllowed
	// adds the Allow header.
	errMethodNotAllowedBase = &apiError{status: http.StatusMethodNotAllowed, msg: "Method not allowed", outcome: "method_not_allowed"}
)

// The shared failures answer with a body encoded once: a rejected request
// (a malformed password, a user out of attempts) then costs no encoding.
// A failure missing from this list is encoded when it is answered, with
// the same result.
func init() {
	for _, e := range []*apiError{
		errInvalidUserID, errMissingAuth, errBadAuthFormat, errUserMismatch, errPasswordFormat,
		errBodyTooLarge, errInvalidJSON, errBodyNotObject, errScopesNotList, errUsernameInvalid,
		errInvalidPassword, errInvalidCreds, errUIDMismatch, errNCServer, errNCUnreachable,
		errNCBadResponse, errStorage, errNotProvisioned, errLimiterUnavail, errInternal,
		errMethodNotAllowedBase,
	} {
		e.body = encodeError(e)
	}
}

// unavailableRetryAfter is the Retry-After of a 503: Vault or Redis did
// not answer. A raft election in a Vault cluster, or Sentinel promoting a
// replica, takes a few seconds; a client that waits this long usually
// finds the dependency back (README: "Running several replicas").
const unavailableRetryAfter = "5"

// retryAfterSeconds is the N of a 429 (docs/API.md): max(1, ceil(d)), so
// a client that waits N seconds finds an attempt free.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// maxKeptRetryAfter bounds the 429 answers errRateLimited keeps: every
// wait of the default window (1 h), in seconds.
const maxKeptRetryAfter = 3600

// rateLimited are the 429 failures by their wait, each built on first
// use and then shared: a flood of requests of users out of attempts
// costs no allocation and no encoding per answer. At most 3600 of them,
// about a megabyte; a longer window's longer waits are built per request.
var rateLimited [maxKeptRetryAfter + 1]atomic.Pointer[apiError]

func errRateLimited(retryAfter int) *apiError {
	keep := retryAfter > 0 && retryAfter <= maxKeptRetryAfter
	if keep {
		if e := rateLimited[retryAfter].Load(); e != nil {
			return e
		}
	}
	e := &apiError{
		status:     http.StatusTooManyRequests,
		msg:        "Rate limit exceeded. Try again in " + strconv.Itoa(retryAfter) + " seconds.",
		outcome:    "rate_limited",
		retryAfter: retryAfter,
	}
	if keep {
		// Two requests may build the same one; either is right.
		e.body, e.retryAfterText = encodeError(e), strconv.Itoa(retryAfter)
		rateLimited[retryAfter].Store(e)
	}
	return e
}

func errInvalidScopes(bad, valid []string) *apiError {
	msg := "Invalid scopes: "
	for i, s := range bad {
		if i > 0 {
			msg += ", "
		}
		msg += s
	}
	return &apiError{status: http.StatusBadRequest, msg: msg, outcome: "invalid_scopes", validScopes: valid}
}

func errMethodNotAllowed(allow string) *apiError {
	e := *errMethodNotAllowedBase
	e.allow = allow
	return &e
}
