package caddyapppw

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"testing"
)

// referenceWriteJSON is how the answers were written before they were
// pooled and encoded ahead: the reference the answers must match byte for
// byte, headers included.
func referenceWriteJSON(w http.ResponseWriter, status int, body any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	out := []byte(`{"success":false,"error":"Internal server error"}`)
	if err := enc.Encode(body); err == nil {
		out = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	} else {
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

func referenceWriteError(w http.ResponseWriter, e *apiError) {
	hdr := w.Header()
	switch e.status {
	case http.StatusUnauthorized:
		hdr.Set("WWW-Authenticate", `Basic realm="app_password", charset="UTF-8"`)
	case http.StatusTooManyRequests:
		hdr.Set("Retry-After", strconv.Itoa(e.retryAfter))
	case http.StatusMethodNotAllowed:
		hdr.Set("Allow", e.allow)
	case http.StatusServiceUnavailable:
		hdr.Set("Retry-After", "5")
	}
	referenceWriteJSON(w, e.status, errorResponse{Error: e.msg, ValidScopes: e.validScopes})
}

func sameAnswer(t *testing.T, name string, got, want *httptest.ResponseRecorder) {
	t.Helper()
	if got.Code != want.Code || !reflect.DeepEqual(got.Header(), want.Header()) || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
		t.Errorf("%s:\n got %d %v %s\nwant %d %v %s", name, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
	}
}

// Every answer is the one the plain encoding gives, byte for byte and
// header for header: the success bodies with characters HTML escaping
// would touch, every shared failure (encoded once, at start), the
// failures built per request (429 for any wait, 405, invalid scopes),
// one with a cause.
func TestAnswersByteForByte(t *testing.T) {
	login, created := `<b>ob & "c" ü`+"\u2028", int64(1_800_000_000)
	odd := []string{"notes.read", "a<b>&c", "ü", `q"uote`}
	successes := map[string]any{
		"provision":         provisionResponse{Success: true, Message: "App password stored for o'neil", Scopes: odd},
		"provision nil":     provisionResponse{Success: true, Message: "App password stored for bob"},
		"provision empty":   provisionResponse{Success: true, Message: "x", Scopes: []string{}},
		"status":            statusResponse{Success: true, UserID: "alice", HasAppPassword: true},
		"message":           messageResponse{Success: true, Message: "No app password found to delete"},
		"access":            accessResponse{Success: true, UserID: "alice", Provisioned: true, Scopes: odd, Username: &login, CreatedAt: &created, UpdatedAt: &created},
		"access none":       accessResponse{Success: true, UserID: "alice"},
		"scopes updated":    scopesUpdatedResponse{Success: true, Message: "Scopes updated successfully", Scopes: odd},
		"scopes":            scopesResponse{Success: true, Scopes: defaultScopes()},
		"does not encode":   map[string]any{"x": make(chan int)},
		"big (not pooled)":  messageResponse{Success: true, Message: string(bytes.Repeat([]byte("<x>"), 20_000))},
		"after a big one":   statusResponse{Success: true, UserID: "bob"},
		"unicode and HTML":  messageResponse{Success: true, Message: "\u00e9<>&\u2029"},
		"empty scopes list": scopesResponse{Success: true, Scopes: []string{}},
	}
	for name, body := range successes {
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		writeJSON(got, http.StatusOK, body)
		referenceWriteJSON(want, http.StatusOK, body)
		sameAnswer(t, name, got, want)
	}

	failures := map[string]*apiError{
		"invalid user id": errInvalidUserID, "missing auth": errMissingAuth, "bad auth": errBadAuthFormat,
		"user mismatch": errUserMismatch, "format": errPasswordFormat, "too large": errBodyTooLarge,
		"invalid json": errInvalidJSON, "not object": errBodyNotObject, "scopes not list": errScopesNotList,
		"username": errUsernameInvalid, "invalid password": errInvalidPassword, "invalid creds": errInvalidCreds,
		"uid mismatch": errUIDMismatch, "nc server": errNCServer, "nc unreachable": errNCUnreachable,
		"nc bad response": errNCBadResponse, "storage": errStorage, "not provisioned": errNotProvisioned,
		"limiter": errLimiterUnavail, "internal": errInternal,
		"storage with cause": errStorage.withCause(errors.New("sealed: <secret path>")),
		"405":                errMethodNotAllowed("GET, POST, DELETE"),
		"invalid scopes":     errInvalidScopes([]string{"a<b", "ü", `"q"`}, []string{"notes.read", "x&y"}),
		"not encoded ahead":  {status: http.StatusBadRequest, msg: "Some <new> failure & more", outcome: "x"},
	}
	for _, n := range []int{1, 9, 99, 100, 999, 3599, 3600, 86_400, 1 << 40} {
		failures["429 "+strconv.Itoa(n)] = errRateLimited(n)
		failures["429 "+strconv.Itoa(n)+", kept"] = errRateLimited(n)
	}
	for name, e := range failures {
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		writeError(got, e)
		referenceWriteError(want, e)
		sameAnswer(t, name, got, want)
	}
}

// The shared failures are encoded once, at start: answering one encodes
// nothing.
func TestAnswerOfASharedFailureIsEncodedAhead(t *testing.T) {
	for _, e := range []*apiError{errPasswordFormat, errInvalidPassword, errStorage.withCause(errors.New("x"))} {
		if e.body == nil {
			t.Errorf("%q: no body encoded ahead", e.msg)
		}
	}
	w := &benchWriter{hdr: http.Header{}}
	allocs := testing.AllocsPerRun(100, func() {
		w.reset()
		writeError(w, errPasswordFormat)
	})
	// One array for the header values.
	if allocs > 1 {
		t.Errorf("answering a shared failure: %v allocations, want at most 1", allocs)
	}
}

// An answer's header values are its own: a handler after the module that
// changes one in place (Caddy's header replacements do) changes no other
// answer.
func TestAnswerHeadersAreNotShared(t *testing.T) {
	first := httptest.NewRecorder()
	writeError(first, errPasswordFormat)
	for _, vals := range first.Header() {
		for i := range vals {
			vals[i] = "changed"
		}
	}
	got, want := httptest.NewRecorder(), httptest.NewRecorder()
	writeError(got, errPasswordFormat)
	referenceWriteError(want, errPasswordFormat)
	sameAnswer(t, "after a change to another answer's headers", got, want)
}
