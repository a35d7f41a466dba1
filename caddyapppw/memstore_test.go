package caddyapppw

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// memStore is a store in memory, with KV v2's check-and-set rules, for
// the tests that drive the handler without Vault.
type memStore struct {
	mu      sync.Mutex
	records map[string]vaultkv.Record
}

func newMemStore() *memStore { return &memStore{records: map[string]vaultkv.Record{}} }

func (m *memStore) Load(_ context.Context, userID string) (*vaultkv.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[userID]
	if !ok {
		return nil, vaultkv.ErrNotFound
	}
	return &rec, nil
}

func (m *memStore) Save(_ context.Context, rec *vaultkv.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.records[rec.UserID].Version != rec.Version {
		return vaultkv.ErrConflict
	}
	stored := *rec
	stored.Version++
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

// bareZones numbers the rate-limit zones of bare handlers: each has
// state of its own, as a fresh handler of the original tests had.
var bareZones atomic.Int64

// bareHandler is the handler as Provision sets it up, around a memory store
// (the storeForTests seam) and an in-process Nextcloud, logging to logger.
// It is let go of when t ends.
func bareHandler(t testing.TB, logger *zap.Logger) *Handler {
	t.Helper()
	h := &Handler{
		Nextcloud: &nextcloud.Config{URL: "http://nextcloud.invalid"},
		RateLimit: &ratelimit.Config{Attempts: 1000, MaxUsers: 1000, Zone: fmt.Sprint("bare-", bareZones.Add(1))},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	old := storeForTests
	storeForTests = func() store { return newMemStore() }
	err := h.Provision(ctx)
	storeForTests = old
	t.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	h.logger, h.audit, h.now = logger, logger.Named("audit"), time.Now
	h.nextcloud.SetTransport(ncFunc(ocsAnswerFor))
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
