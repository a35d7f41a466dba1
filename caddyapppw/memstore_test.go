package caddyapppw

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// memStore is a Store in memory, with KV v2's check-and-set rules, for
// the tests that drive the handler without Caddy or Vault (fuzzing).
type memStore struct {
	mu      sync.Mutex
	records map[string]Record
}

func newMemStore() *memStore { return &memStore{records: map[string]Record{}} }

func (m *memStore) Load(_ context.Context, userID string) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[userID]
	if !ok {
		return nil, ErrNotFound
	}
	return &rec, nil
}

func (m *memStore) Save(_ context.Context, rec *Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.records[rec.UserID].version != rec.version {
		return ErrConflict
	}
	stored := *rec
	stored.version++
	m.records[rec.UserID] = stored
	return nil
}

func (m *memStore) Delete(_ context.Context, userID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.records, userID)
	return nil
}

// ncFunc answers Nextcloud's OCS request in process.
type ncFunc func(*http.Request) *http.Response

func (f ncFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r), nil }

// ocsAnswerFor is Nextcloud's answer for a login: user "alice" with
// password alicePW is valid, everything else is 401.
func ocsAnswerFor(r *http.Request) *http.Response {
	user, pw, _ := r.BasicAuth()
	status, body := http.StatusUnauthorized, `{"ocs":{"meta":{"status":"failure","statuscode":997,"message":"Current user is not logged in"},"data":[]}}`
	if user == "alice" && pw == alicePW {
		status, body = http.StatusOK, `{"ocs":{"meta":{"status":"ok","statuscode":200,"message":"OK"},"data":{"id":"alice"}}}`
	}
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}
}

// bareHandler is the handler provisioned by hand around a memory store and
// an in-process Nextcloud, logging to logger.
func bareHandler(logger *zap.Logger) *Handler {
	h := &Handler{Nextcloud: &NextcloudConfig{URL: "http://nextcloud.invalid"}, RateLimit: &RateLimitConfig{Attempts: 1000}}
	if err := h.applyDefaults(); err != nil {
		panic(err)
	}
	initMetrics()
	h.logger, h.audit, h.now = logger, logger.Named("audit"), time.Now
	h.nextcloud = &nextcloud{endpoint: "http://nextcloud.invalid" + ocsUserPath, client: &http.Client{Transport: ncFunc(ocsAnswerFor)}}
	h.store = newMemStore()
	h.limiter = newLimiter()
	h.limits = limits{attempts: h.RateLimit.Attempts, window: time.Duration(h.RateLimit.Window), maxUsers: 1000}
	return h
}

// nextHandler stands for reverse_proxy.
var nextHandler = caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
	w.WriteHeader(http.StatusTeapot)
	return nil
})

// serve runs one request through h and returns the recorder.
func serve(h *Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nextHandler); err != nil {
		panic(err)
	}
	return w
}

// isAPIAnswer reports whether w is a well-formed answer of the API.
func isAPIAnswer(w *httptest.ResponseRecorder) bool {
	var body map[string]any
	return w.Header().Get("Content-Type") == "application/json" &&
		w.Header().Get("Cache-Control") == "no-store" &&
		json.Unmarshal(w.Body.Bytes(), &body) == nil &&
		bytes.HasPrefix(w.Body.Bytes(), []byte(`{"success":`))
}
