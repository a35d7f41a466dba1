package caddyapppw

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
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

// answerBuf is a buffer and a JSON encoder writing into it, pooled: an
// answer then costs no allocation of its own. The encoder is
// encoding/json's, as for every answer: no HTML escaping, and the
// trailing newline cut.
type answerBuf struct {
	buf bytes.Buffer
	enc *json.Encoder
	// err is the error body being encoded: a field, so that handing it
	// to the encoder does not allocate.
	err errorResponse
}

// maxPooledAnswer bounds the buffers kept: the answers are small, and an
// odd large one must not stay.
const maxPooledAnswer = 16 << 10

var answerBufs = sync.Pool{New: func() any {
	a := new(answerBuf)
	a.enc = json.NewEncoder(&a.buf)
	a.enc.SetEscapeHTML(false)
	return a
}}

// encode returns body as compact JSON, valid until a is put back.
func (a *answerBuf) encode(body any) ([]byte, error) {
	a.buf.Reset()
	if err := a.enc.Encode(body); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(a.buf.Bytes(), []byte("\n")), nil
}

func (a *answerBuf) put() {
	a.err = errorResponse{}
	if a.buf.Cap() <= maxPooledAnswer {
		answerBufs.Put(a)
	}
}

// internalErrorBody is the answer should a body ever not encode.
var internalErrorBody = []byte(`{"success":false,"error":"Internal server error"}`)

// writeJSON sends body as compact JSON with the headers every answer of the
// API carries. The encoding matches the original Starlette endpoint byte
// for byte: no HTML escaping and no trailing newline.
func writeJSON(w http.ResponseWriter, status int, body any) {
	a := answerBufs.Get().(*answerBuf)
	defer a.put()
	out, err := a.encode(body)
	if err != nil {
		// Only this package's response types reach here, and they
		// always encode; this is the answer should one ever not.
		status, out = http.StatusInternalServerError, internalErrorBody
	}
	writeAnswer(w, status, out, "", "")
}

// writeError sends e as the API's error body with the headers its status
// calls for. The body of a shared failure was encoded once (errors.go);
// the others are encoded here.
func writeError(w http.ResponseWriter, e *apiError) {
	var name, value string
	switch e.status {
	case http.StatusUnauthorized:
		name, value = "Www-Authenticate", `Basic realm="app_password", charset="UTF-8"`
	case http.StatusTooManyRequests:
		name, value = "Retry-After", e.retryAfterText
		if value == "" {
			value = strconv.Itoa(e.retryAfter)
		}
	case http.StatusMethodNotAllowed:
		name, value = "Allow", e.allow
	case http.StatusServiceUnavailable:
		// Vault or Redis did not answer: most often an election or a
		// failover, over in seconds.
		name, value = "Retry-After", unavailableRetryAfter
	}
	if e.body != nil {
		writeAnswer(w, e.status, e.body, name, value)
		return
	}
	a := answerBufs.Get().(*answerBuf)
	defer a.put()
	status := e.status
	a.err = errorResponse{Error: e.msg, ValidScopes: e.validScopes}
	out, err := a.encode(&a.err)
	if err != nil {
		status, out = http.StatusInternalServerError, internalErrorBody
	}
	writeAnswer(w, status, out, name, value)
}

// encodeError is e's answer body, for the shared failures to keep.
func encodeError(e *apiError) []byte {
	a := answerBufs.Get().(*answerBuf)
	defer a.put()
	a.err = errorResponse{Error: e.msg, ValidScopes: e.validScopes}
	out, err := a.encode(&a.err)
	if err != nil {
		return nil
	}
	return bytes.Clone(out)
}

// writeAnswer sends out with the headers every answer carries, and the
// header name: value when name is set. The values share one allocation;
// each is a slice of its own capacity, so a later handler that changes
// one in place (Caddy's header replacements do) changes this answer's
// only, and one that appends gets a new array.
func writeAnswer(w http.ResponseWriter, status int, out []byte, name, value string) {
	vals := make([]string, 5)
	vals[0], vals[1], vals[2], vals[3] = "application/json", "no-store", "nosniff", strconv.Itoa(len(out))
	hdr := w.Header()
	if name != "" {
		vals[4] = value
		hdr[name] = vals[4:5:5]
	}
	hdr["Content-Type"] = vals[0:1:1]
	hdr["Cache-Control"] = vals[1:2:2]
	hdr["X-Content-Type-Options"] = vals[2:3:3]
	hdr["Content-Length"] = vals[3:4:4]
	w.WriteHeader(status)
	_, _ = w.Write(out)
}
