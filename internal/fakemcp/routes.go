package fakemcp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// supportedScopes is the MCP server's ALL_SUPPORTED_SCOPES.
var supportedScopes = func() []string {
	var s []string
	for _, app := range strings.Fields("notes calendar todo contacts files tables deck cookbook sharing news mail talk collectives") {
		s = append(s, app+".read", app+".write")
	}
	s = append(s, "mail.send", "semantic.read")
	slices.Sort(s)
	return s
}()

// The answers, with their fields in the MCP server's order.
type (
	errorAnswer struct {
		Success bool   `json:"success"`
		Error   string `json:"error"`
	}
	provisioned struct {
		Success bool     `json:"success"`
		Message string   `json:"message"`
		Scopes  []string `json:"scopes"`
	}
	statusAnswer struct {
		Success        bool   `json:"success"`
		UserID         string `json:"user_id"`
		HasAppPassword bool   `json:"has_app_password"`
	}
	deleted struct {
		Success bool   `json:"success"`
		Message string `json:"message"`
	}
	accessNone struct {
		Success     bool      `json:"success"`
		UserID      string    `json:"user_id"`
		Provisioned bool      `json:"provisioned"`
		Scopes      []string  `json:"scopes"`
		Username    *struct{} `json:"username"`
	}
	accessRow struct {
		Success     bool     `json:"success"`
		UserID      string   `json:"user_id"`
		Provisioned bool     `json:"provisioned"`
		Scopes      []string `json:"scopes"`
		Username    *string  `json:"username"`
		CreatedAt   int64    `json:"created_at"`
		UpdatedAt   int64    `json:"updated_at"`
	}
	scopesUpdated struct {
		Success bool     `json:"success"`
		UserID  string   `json:"user_id"`
		Scopes  []string `json:"scopes"`
		Message string   `json:"message"`
	}
	invalidScopes struct {
		Success     bool     `json:"success"`
		Error       string   `json:"error"`
		ValidScopes []string `json:"valid_scopes"`
	}
)

// provision is POST app-password: store (upsert) and count the success.
func (h *Handler) provision(w http.ResponseWriter, r *http.Request) {
	uid, password, ok := h.gate(w, r, true, "Invalid app password")
	if !ok {
		return
	}
	body := bodyObject(r)
	username, _ := body["username"].(string)
	scopes, ok := stringList(body["scopes"])
	if !ok || !allSupported(scopes) {
		// The storage layer raises; the route answers 500 and does not
		// count the attempt.
		writeError(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	h.mu.Lock()
	now := h.now().Unix()
	row, existed := h.rows[uid]
	if !existed {
		row.CreatedAt = now
	}
	row.Password, row.Username, row.Scopes, row.UpdatedAt = password, username, scopes, now
	h.rows[uid] = row
	h.mu.Unlock()
	h.count(uid)
	writeJSON(w, http.StatusOK, provisioned{Success: true, Message: "App password stored for " + uid, Scopes: scopes})
}

// status is GET app-password.
func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	uid, _, ok := h.gate(w, r, false, "Invalid app password")
	if !ok {
		return
	}
	_, has := h.Get(uid)
	writeJSON(w, http.StatusOK, statusAnswer{Success: true, UserID: uid, HasAppPassword: has})
}

// delete is DELETE app-password: the password must still open Nextcloud.
func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	uid, _, ok := h.gate(w, r, false, "Invalid credentials")
	if !ok {
		return
	}
	h.mu.Lock()
	_, existed := h.rows[uid]
	delete(h.rows, uid)
	h.mu.Unlock()
	if !existed {
		writeJSON(w, http.StatusOK, deleted{Success: true, Message: "No app password found to delete"})
		return
	}
	writeJSON(w, http.StatusOK, deleted{Success: true, Message: "App password deleted for " + uid})
}

// access is GET access: the row without its password.
func (h *Handler) access(w http.ResponseWriter, r *http.Request) {
	uid, _, ok := h.gate(w, r, false, "Invalid credentials")
	if !ok {
		return
	}
	row, has := h.Get(uid)
	if !has {
		writeJSON(w, http.StatusOK, accessNone{Success: true, UserID: uid})
		return
	}
	a := accessRow{Success: true, UserID: uid, Provisioned: true, Scopes: row.Scopes, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt}
	if row.Username != "" {
		a.Username = &row.Username
	}
	writeJSON(w, http.StatusOK, a)
}

// updateScopes is PATCH scopes: replace the scopes of an existing row.
func (h *Handler) updateScopes(w http.ResponseWriter, r *http.Request) {
	uid, _, ok := h.gate(w, r, false, "Invalid credentials")
	if !ok {
		return
	}
	v, err := bodyJSON(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body")
		return
	}
	body, isObject := v.(map[string]any)
	if !isObject {
		internalError(w) // body.get on a list: an AttributeError
		return
	}
	raw, isList := body["scopes"].([]any)
	if !isList {
		writeError(w, http.StatusBadRequest, "scopes must be a list of strings")
		return
	}
	scopes, ok := stringList(raw)
	if !ok {
		internalError(w) // ", ".join over a non-string: a TypeError
		return
	}
	var invalid []string
	for _, s := range scopes {
		if _, found := slices.BinarySearch(supportedScopes, s); !found {
			invalid = append(invalid, s)
		}
	}
	if len(invalid) > 0 {
		writeJSON(w, http.StatusBadRequest, invalidScopes{Error: "Invalid scopes: " + strings.Join(invalid, ", "), ValidScopes: supportedScopes})
		return
	}
	h.mu.Lock()
	row, has := h.rows[uid]
	if has {
		row.Scopes, row.UpdatedAt = scopes, h.now().Unix()
		h.rows[uid] = row
	}
	h.mu.Unlock()
	if !has {
		writeError(w, http.StatusNotFound, "No app password provisioned for this user")
		return
	}
	writeJSON(w, http.StatusOK, scopesUpdated{Success: true, UserID: uid, Scopes: scopes, Message: "Scopes updated successfully"})
}

// stringList reads a JSON scopes value: null is nil, a list of strings is
// that list (empty, not nil, for []); anything else is not ok.
func stringList(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func allSupported(scopes []string) bool {
	for _, s := range scopes {
		if _, found := slices.BinarySearch(supportedScopes, s); !found {
			return false
		}
	}
	return true
}

func writeError(w http.ResponseWriter, status int, text string) {
	writeJSON(w, status, errorAnswer{Error: text})
}

// writeJSON answers as Starlette's JSONResponse: compact, non-ASCII and
// HTML characters as they are, Content-Type application/json, a length.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		internalError(w)
		return
	}
	body := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// internalError is Starlette's answer to an unhandled exception.
func internalError(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte("Internal Server Error"))
}
