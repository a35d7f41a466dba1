package fakemcp

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// The MCP server's constants.
const (
	nextcloudTimeout = 10 * time.Second
	// maxOCSBody bounds what the double reads of a Nextcloud answer.
	maxOCSBody = 1 << 20
)

// passwordFormat is the MCP server's shape guard for a provisioned
// password: the dashed 5×5 app password and the long raw tokens.
var passwordFormat = regexp.MustCompile(`^[a-zA-Z0-9-]{20,256}$`)

// gate runs the checks every route shares, in the MCP server's order, and
// answers the request itself when one fails. invalid is the route's text
// for a password Nextcloud refuses. It returns the path user_id and the
// password.
func (h *Handler) gate(w http.ResponseWriter, r *http.Request, formatCheck bool, invalid string) (string, string, bool) {
	uid := r.PathValue("user_id")
	if uid == "" || strings.Contains(uid, "/") {
		// Starlette matches {user_id} on the decoded path: an encoded
		// slash is no match, an empty segment neither.
		http.NotFound(w, r)
		return "", "", false
	}

	// 1. BasicAuth, not counted.
	name, password, fail := basicAuth(r.Header.Get("Authorization"))
	if fail != "" {
		writeError(w, http.StatusUnauthorized, fail)
		return "", "", false
	}
	if name != uid {
		writeError(w, http.StatusForbidden, "Username does not match path user_id")
		return "", "", false
	}

	// 2. The limiter, per path user_id.
	if wait, limited := h.limited(uid); limited {
		w.Header().Set("Retry-After", fmt.Sprint(wait))
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("Rate limit exceeded. Try again in %d seconds.", wait))
		return "", "", false
	}

	// 3. POST only: the format.
	if formatCheck && !passwordFormat.MatchString(password) {
		h.count(uid)
		writeError(w, http.StatusBadRequest, "Invalid app password format")
		return "", "", false
	}

	// 4. Nextcloud, as the body's username if it has one.
	login := uid
	if u, ok := bodyObject(r)["username"].(string); ok && u != "" {
		login = u
	}
	ocsUID, status, text := h.checkNextcloud(r, login, password, invalid)
	if s, _ := ocsUID.(string); status == 0 && s != uid {
		status, text = http.StatusForbidden, "User ID mismatch"
	}
	if status != 0 {
		h.count(uid)
		writeError(w, status, text)
		return "", "", false
	}
	return uid, password, true
}

// basicAuth decodes an Authorization header as the MCP server does:
// "Basic " exactly, base64 (characters outside the alphabet skipped, as
// Python's b64decode does), UTF-8, split at the first colon. fail is the
// error text.
func basicAuth(header string) (name, password, fail string) {
	const prefix = "Basic "
	if !strings.HasPrefix(header, prefix) {
		return "", "", "Missing BasicAuth credentials"
	}
	encoded := strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=' {
			return r
		}
		return -1
	}, header[len(prefix):])
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || !utf8.Valid(raw) {
		return "", "", "Invalid BasicAuth format"
	}
	name, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", "Invalid BasicAuth format"
	}
	return name, password, ""
}

// limited tells whether uid has used its attempts, and for how many
// seconds: int(oldest + window − now), at least 1, as the MCP server
// rounds.
func (h *Handler) limited(uid string) (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kept := h.pruneLocked(uid)
	if len(kept) < Limit {
		return 0, false
	}
	left := kept[0].Add(Window).Sub(h.now()).Seconds()
	return max(1, int(math.Trunc(left))), true
}

// count records a counted attempt for uid.
func (h *Handler) count(uid string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts[uid] = append(h.attempts[uid], h.now())
}

// pruneLocked drops uid's attempts that left the window (kept when
// strictly newer than now − window) and returns the rest, oldest first.
func (h *Handler) pruneLocked(uid string) []time.Time {
	start := h.now().Add(-Window)
	kept := h.attempts[uid][:0]
	for _, at := range h.attempts[uid] {
		if at.After(start) {
			kept = append(kept, at)
		}
	}
	if len(kept) == 0 {
		delete(h.attempts, uid)
		return nil
	}
	h.attempts[uid] = kept
	return kept
}

// checkNextcloud asks OCS v2 cloud/user who login with password is. It
// returns ocs.data.id as Nextcloud sent it (the uid), or the MCP server's
// status and text for a failure.
func (h *Handler) checkNextcloud(r *http.Request, login, password, invalid string) (any, int, string) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, h.nextcloud+"/ocs/v2.php/cloud/user?format=json", nil)
	if err != nil {
		return nil, http.StatusBadGateway, "Failed to validate credentials"
	}
	req.SetBasicAuth(login, password)
	req.Header.Set("OCS-APIRequest", "true")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, http.StatusBadGateway, "Failed to validate credentials"
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, http.StatusUnauthorized, invalid
	case resp.StatusCode != http.StatusOK:
		return nil, http.StatusBadGateway, "Nextcloud returned a server error"
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxOCSBody))
	if err != nil {
		return nil, http.StatusBadGateway, "Failed to validate credentials"
	}
	var payload any
	if json.Unmarshal(raw, &payload) != nil {
		return nil, http.StatusBadGateway, "Unexpected response from Nextcloud"
	}
	ocs, _ := object(payload)["ocs"].(map[string]any)
	meta, _ := ocs["meta"].(map[string]any)
	data, _ := ocs["data"].(map[string]any)
	statuscode, hasStatus := meta["statuscode"]
	id := data["id"]
	if hasStatus && statuscode != nil && !ocsSuccess(statuscode) || !truthy(id) {
		return nil, http.StatusUnauthorized, invalid
	}
	return id, 0, ""
}

// ocsSuccess is statuscode in {100, 200}, compared as Python compares
// numbers.
func ocsSuccess(v any) bool {
	n, ok := v.(float64)
	return ok && (n == 100 || n == 200)
}

// truthy is Python's truth of a JSON value.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case float64:
		return v != 0
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

// bodyObject is the request body as a JSON object, or nil when it is
// empty, not JSON or not an object (a legacy call without extras).
func bodyObject(r *http.Request) map[string]any {
	v, _ := bodyJSON(r)
	return object(v)
}

// bodyJSON parses the whole request body, as Starlette's request.json().
func bodyJSON(r *http.Request) (any, error) {
	body, _ := r.Context().Value(bodyKey{}).([]byte)
	var v any
	err := json.Unmarshal(body, &v)
	return v, err
}

// bodyKey holds the body bytes in the request's context: the gate and
// the route both read them, as Starlette caches request.json().
type bodyKey struct{}

func object(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
