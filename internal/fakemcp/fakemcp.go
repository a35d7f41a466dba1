// Package fakemcp is a test double of the Nextcloud MCP server's own
// app-password routes (upstream nextcloud-mcp-server, as of v0.181): the
// server the module hands each accepted change on to when delivery is on.
// It is meant to be no kinder than the real one, so that a delivery that
// passes against it passes against the MCP server:
//
//   - POST|GET|DELETE /api/v1/users/{user_id}/app-password,
//     GET /api/v1/users/{user_id}/access and
//     PATCH /api/v1/users/{user_id}/scopes, behind one gate, in this
//     order: BasicAuth present, decodable and naming the path user_id (not
//     counted); its own limiter per path user_id, 5 counted attempts per
//     hour (429, Retry-After); POST only, the password format (400,
//     counted); the password checked against Nextcloud's OCS v2
//     cloud/user as the body's username, else as the path user_id (401,
//     502 or 403, all counted).
//   - A successful POST is counted too, so a sixth provision in an hour
//     is refused with 429 — the limit the module must not exceed.
//   - Its table is in memory, one row per user id, written by upserts
//     that keep created_at, as the MCP server's app_passwords table.
//   - Every request it receives is recorded as it arrived (method, path,
//     headers, body bytes), so a test can see what delivery sent.
//
// The texts and JSON shapes are the MCP server's, byte for byte where a
// caller can see them. Where the MCP server fails in ways no delivery can
// provoke (a non-object body on PATCH, scopes that are not strings) it
// answers 500 as Starlette does, without imitating its text.
package fakemcp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"
)

// The MCP server's limiter: counted attempts per path user_id per window.
const (
	Limit  = 5
	Window = time.Hour
)

// Record is one row of the MCP server's app_passwords table.
type Record struct {
	Password string
	// Username is the login name from the POST body; "" is NULL.
	Username string
	// Scopes are the granted scopes; nil is NULL (no restriction).
	Scopes []string
	// CreatedAt and UpdatedAt are Unix seconds. An upsert keeps
	// CreatedAt; POST and PATCH set UpdatedAt.
	CreatedAt, UpdatedAt int64
}

// Request is one request as the double received it.
type Request struct {
	Method   string
	Path     string // decoded, as r.URL.Path
	RawQuery string
	// Header is the request's header as Go's server parsed it: it holds
	// Content-Length when the client sent one.
	Header        http.Header
	ContentLength int64    // -1 when the length was unknown (chunked)
	Chunked       bool     // Transfer-Encoding: chunked
	Body          []byte   // every byte the client sent
	Trailer       []string // names of trailers, if any
}

// Handler is the MCP server's app-password API as an http.Handler.
type Handler struct {
	nextcloud string
	client    *http.Client
	mux       *http.ServeMux

	mu       sync.Mutex
	now      func() time.Time
	rows     map[string]Record
	attempts map[string][]time.Time // counted attempts by path user_id
	requests []Request
}

// NewHandler returns the routes, checking passwords against the Nextcloud
// at nextcloudURL (no trailing slash).
func NewHandler(nextcloudURL string) *Handler {
	h := &Handler{
		nextcloud: nextcloudURL,
		client: &http.Client{
			Timeout: nextcloudTimeout,
			// httpx, which the MCP server uses, does not follow
			// redirects unless told to.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		mux:      http.NewServeMux(),
		now:      time.Now,
		rows:     map[string]Record{},
		attempts: map[string][]time.Time{},
	}
	const user = "/api/v1/users/{user_id}/"
	h.mux.HandleFunc("POST "+user+"app-password", h.provision)
	h.mux.HandleFunc("GET "+user+"app-password", h.status)
	h.mux.HandleFunc("DELETE "+user+"app-password", h.delete)
	h.mux.HandleFunc("GET "+user+"access", h.access)
	h.mux.HandleFunc("PATCH "+user+"scopes", h.updateScopes)
	return h
}

// SetClock sets the time the limiter and the timestamps run on.
func (h *Handler) SetClock(now func() time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = now
}

// ServeHTTP records the request, then answers it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	rec := Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		RawQuery:      r.URL.RawQuery,
		Header:        r.Header.Clone(),
		ContentLength: r.ContentLength,
		Chunked:       slices.Contains(r.TransferEncoding, "chunked"),
		Body:          body,
	}
	for name := range r.Trailer {
		rec.Trailer = append(rec.Trailer, name)
	}
	h.mu.Lock()
	h.requests = append(h.requests, rec)
	h.mu.Unlock()
	r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	h.mux.ServeHTTP(w, r)
}

// Get returns uid's row.
func (h *Handler) Get(uid string) (Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rec, ok := h.rows[uid]
	rec.Scopes = slices.Clone(rec.Scopes)
	return rec, ok
}

// Put writes uid's row directly, as if the MCP server had stored it
// before the module arrived.
func (h *Handler) Put(uid string, rec Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rec.Scopes = slices.Clone(rec.Scopes)
	h.rows[uid] = rec
}

// Delete drops uid's row directly, as an operator would.
func (h *Handler) Delete(uid string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.rows, uid)
}

// Len is the number of rows.
func (h *Handler) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rows)
}

// Requests returns every request received so far, in order.
func (h *Handler) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

// Counted is how many attempts the limiter holds for uid within the
// window now.
func (h *Handler) Counted(uid string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pruneLocked(uid))
}

// Server is the double listening on a local port.
type Server struct {
	*httptest.Server
	*Handler
}

// New starts the double, checking passwords against the Nextcloud at
// nextcloudURL; it is closed when the test ends. A test may Close it
// earlier to take the MCP server down.
func New(t interface{ Cleanup(func()) }, nextcloudURL string) *Server {
	h := NewHandler(nextcloudURL)
	s := &Server{Server: httptest.NewServer(h), Handler: h}
	t.Cleanup(s.Server.Close)
	return s
}
