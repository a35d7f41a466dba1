package caddyapppw

import "github.com/caddy-apppw/caddy-apppw/internal/ratelimit"

// loginBudgetSpent reserves the stored login name's budget for req and
// reports whether it is spent; the request then proves its password as
// the uid instead, as it would for a user who has not provisioned.
//
// Why not 429: anyone can spend a login name's budget with POSTs through
// throwaway ids ({"username": "alice@example.com"}). A 429 here, where a
// user without a record is asked as the uid and answered 401, would tell
// that attacker who has provisioned, and under which login. Checked as
// the uid, under the uid's budget (already reserved), a provisioned and
// an unprovisioned user get the same answer after the same Nextcloud
// check, so neither the status nor the timing tells them apart. No
// guess is added: a POST to the uid's own path without a body is checked
// as the uid under that same budget. A password Nextcloud accepts as the
// uid is the account's own credential.
//
// A limiter that cannot answer (on_error deny) is not "spent": the
// request goes on to checkNextcloud, which reserves again and answers
// its 503.
func (h *Handler) loginBudgetSpent(req *apiRequest, login string) bool {
	wait, err := h.accounts.Reserve(&req.res, ratelimit.AccountKey(login), h.now())
	return err == nil && wait > 0
}
