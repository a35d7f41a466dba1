package caddyapppw

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// The success bodies of docs/API.md. They are structs, not maps, so the keys
// come out in the documented order; pointers and nil slices are JSON null.

type provisionResponse struct {
	Success bool     `json:"success"`
	Message string   `json:"message"`
	Scopes  []string `json:"scopes"`
}

type statusResponse struct {
	Success        bool   `json:"success"`
	UserID         string `json:"user_id"`
	HasAppPassword bool   `json:"has_app_password"`
}

type messageResponse struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

type accessResponse struct {
	Success     bool     `json:"success"`
	UserID      string   `json:"user_id"`
	Provisioned bool     `json:"provisioned"`
	Scopes      []string `json:"scopes"`
	Username    *string  `json:"username"`
	CreatedAt   *int64   `json:"created_at,omitempty"`
	UpdatedAt   *int64   `json:"updated_at,omitempty"`
}

type scopesUpdatedResponse struct {
	Success bool     `json:"success"`
	Message string   `json:"message"`
	Scopes  []string `json:"scopes"`
}

type scopesResponse struct {
	Success bool     `json:"success"`
	Scopes  []string `json:"scopes"`
}

type errorResponse struct {
	Success     bool     `json:"success"`
	Error       string   `json:"error"`
	ValidScopes []string `json:"valid_scopes,omitempty"`
}

// writeJSON sends body as compact JSON with the headers every answer of the
// API carries. The encoding matches the original Starlette endpoint byte
// for byte: no HTML escaping and no trailing newline.
func writeJSON(w http.ResponseWriter, status int, body any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	out := []byte(`{"success":false,"error":"Internal server error"}`)
	if err := enc.Encode(body); err == nil {
		out = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	} else {
		// Only this package's response types reach here, and they
		// always encode; this is the answer should one ever not.
		status = http.StatusInternalServerError
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// writeError sends e as the API's error body with the headers its status
// calls for.
func writeError(w http.ResponseWriter, e *apiError) {
	hdr := w.Header()
	switch e.status {
	case http.StatusUnauthorized:
		hdr.Set("WWW-Authenticate", `Basic realm="app_password", charset="UTF-8"`)
	case http.StatusTooManyRequests:
		hdr.Set("Retry-After", strconv.Itoa(e.retryAfter))
	case http.StatusMethodNotAllowed:
		hdr.Set("Allow", e.allow)
	}
	writeJSON(w, e.status, errorResponse{Error: e.msg, ValidScopes: e.validScopes})
}
