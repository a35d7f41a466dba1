package caddyapppw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/hashicorp/vault/api"
	"go.uber.org/zap"

	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// memStore is the store of the fast lane (go test -short) and of the
// bare handlers: in memory, with the rules of the Vault store on KV v2
// where the tests look. Save is a check-and-set on the record's version,
// each write a new version number (from 1, again from 1 after Delete, as
// Vault's metadata delete does) and only the newest readable, as the Vault
// store's destroy of older versions leaves it; Load of a record whose
// current version an operator deleted answers vaultkv.ErrLeftovers. It
// keeps the secret's fields as JSON, the form they take in Vault, so the
// harness reads them back as it reads Vault's answer.
type memStore struct {
	mu      sync.Mutex
	secrets map[string]*memSecret
}

// memSecret is the stored form of one user's secret.
type memSecret struct {
	data    []byte // the secret's fields, JSON; nil when deleted
	version int    // of data, or of the deleted version
}

func newMemStore() *memStore { return &memStore{secrets: map[string]*memSecret{}} }

var _ store = (*memStore)(nil)

func (m *memStore) Load(_ context.Context, userID string) (*vaultkv.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.secrets[userID]
	switch {
	case !ok:
		return nil, vaultkv.ErrNotFound
	case s.data == nil:
		return nil, vaultkv.ErrLeftovers
	}
	var rec vaultkv.Record
	if err := json.Unmarshal(s.data, &rec); err != nil {
		return nil, fmt.Errorf("stored record is malformed: %w", err)
	}
	rec.Version = s.version
	return &rec, nil
}

// Save writes rec over the version it was loaded at; a new Record (version
// 0) also over a deleted version, as the Vault store does.
func (m *memStore) Save(_ context.Context, rec *vaultkv.Record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.secrets[rec.UserID]
	current := 0
	if s != nil && s.data != nil {
		current = s.version
	}
	if rec.Version != current {
		return vaultkv.ErrConflict
	}
	m.write(rec.UserID, data)
	rec.Version = m.secrets[rec.UserID].version
	return nil
}

// DeleteIfUnchanged deletes the record while it is at version.
func (m *memStore) DeleteIfUnchanged(_ context.Context, userID string, version int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.secrets[userID]
	switch {
	case s == nil || s.data == nil:
		return vaultkv.ErrNotFound
	case s.version != version:
		return vaultkv.ErrConflict
	}
	delete(m.secrets, userID)
	return nil
}

// write stores data as the next version of userID's secret. m.mu is held.
func (m *memStore) write(userID string, data []byte) {
	s := m.secrets[userID]
	if s == nil {
		s = &memSecret{}
		m.secrets[userID] = s
	}
	s.data, s.version = data, s.version+1
}

func (m *memStore) Delete(_ context.Context, userID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.secrets, userID)
	return nil
}

// List returns the user ids that have a secret (deleted versions
// included, as Vault's LIST of the metadata does), sorted.
func (m *memStore) List(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := slices.Collect(maps.Keys(m.secrets))
	slices.Sort(ids)
	return ids, nil
}

// put writes data as userID's secret without check-and-set, as an operator
// or another writer would (the harness's putRecord).
func (m *memStore) put(userID string, data map[string]any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.write(userID, raw)
	return nil
}

// softDelete deletes the current version and keeps the metadata, as
// "vault kv delete" does (the harness's softDelete).
func (m *memStore) softDelete(userID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.secrets[userID]; s != nil {
		s.data = nil
	}
}

// fields returns userID's secret as the Vault client reads it (numbers as
// json.Number), nil when there is none or it is deleted, and the version.
func (m *memStore) fields(userID string) (map[string]any, int, error) {
	m.mu.Lock()
	s, ok := m.secrets[userID]
	var raw []byte
	version := 0
	if ok && s.data != nil {
		raw, version = s.data, s.version
	}
	m.mu.Unlock()
	if raw == nil {
		return nil, 0, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		return nil, 0, err
	}
	return data, version, nil
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

// contractStore is a store as the contract test drives it: the calls of
// the handler and the sweep, and the two things only a test does (an
// operator's soft delete, reading the stored fields).
type contractStore struct {
	store
	list       func(context.Context) ([]string, error)
	softDelete func(uid string)
	fields     func(uid string) map[string]any // nil when no readable record
}

// TestMemStoreKeepsTheVaultStoresRules runs one sequence of store calls
// against the memory store and, in the full suite, against the Vault
// store on the dev Vault, and expects the same of both: the fast lane's
// handler tests see of their store what the Vault store does (versions and
// check-and-set, leftovers of a soft delete, Delete, List, the stored
// fields as Vault answers them).
func TestMemStoreKeepsTheVaultStoresRules(t *testing.T) {
	mem := newMemStore()
	stores := map[string]contractStore{"memory": {
		store: mem, list: mem.List, softDelete: mem.softDelete,
		fields: func(uid string) map[string]any {
			data, _, err := mem.fields(uid)
			if err != nil {
				t.Fatal(err)
			}
			return data
		},
	}}
	if !testing.Short() {
		v := vaultServer(t)
		cfg := &vaultkv.Config{Address: v.Addr, Token: v.Token, PathPrefix: "test/" + t.Name()}
		cfg.SetDefaults()
		vs, err := vaultkv.New(cfg, vaultkv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = vs.Close() })
		kv := v.Root.KVv2(cfg.Mount)
		stores["vault"] = contractStore{
			store: vs, list: vs.List,
			softDelete: func(uid string) {
				if err := kv.Delete(t.Context(), cfg.PathPrefix+"/"+uid); err != nil {
					t.Fatal(err)
				}
			},
			fields: func(uid string) map[string]any {
				sec, err := kv.Get(t.Context(), cfg.PathPrefix+"/"+uid)
				if errors.Is(err, api.ErrSecretNotFound) {
					return nil
				}
				if err != nil {
					t.Fatal(err)
				}
				return sec.Data
			},
		}
	}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) { storeContract(t, s) })
	}
}

func storeContract(t *testing.T, s contractStore) {
	ctx := t.Context()
	load := func(uid string, want int) *vaultkv.Record {
		t.Helper()
		rec, err := s.Load(ctx, uid)
		if err != nil || rec.Version != want || rec.UserID != uid {
			t.Fatalf("Load(%s): %+v, %v; want version %d", uid, rec, err, want)
		}
		return rec
	}
	save := func(rec *vaultkv.Record, want error) {
		t.Helper()
		if err := s.Save(ctx, rec); !errors.Is(err, want) {
			t.Fatalf("Save(%s at version %d): %v, want %v", rec.UserID, rec.Version, err, want)
		}
	}
	absent := func(uid string, leftovers bool) {
		t.Helper()
		rec, err := s.Load(ctx, uid)
		if rec != nil || !errors.Is(err, vaultkv.ErrNotFound) || errors.Is(err, vaultkv.ErrLeftovers) != leftovers {
			t.Fatalf("Load(%s): %+v, %v; want ErrNotFound, leftovers %v", uid, rec, err, leftovers)
		}
		if got := s.fields(uid); got != nil {
			t.Fatalf("%s holds %v", uid, got)
		}
	}
	list := func(want ...string) {
		t.Helper()
		got, err := s.list(ctx)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("List: %q, %v; want %q", got, err, want)
		}
	}
	newRecord := func(uid, pw string) *vaultkv.Record {
		return &vaultkv.Record{UserID: uid, AppPassword: pw, CreatedAt: 1_800_000_000, UpdatedAt: 1_800_000_000}
	}

	absent("alice", false)
	list()
	save(newRecord("alice", alicePW), nil)
	save(newRecord("alice", alicePW2), vaultkv.ErrConflict) // a second create
	v1 := load("alice", 1)
	want := map[string]any{"user_id": "alice", "app_password": alicePW, "username": nil, "scopes": nil,
		"created_at": json.Number("1800000000"), "updated_at": json.Number("1800000000")}
	if got := s.fields("alice"); !reflect.DeepEqual(got, want) {
		t.Fatalf("stored %#v\nwant %#v", got, want)
	}

	login, next := "alice@example.com", *v1
	next.AppPassword, next.Username, next.Scopes, next.UpdatedAt = alicePW2, &login, []string{"notes.read"}, 1_800_000_060
	save(&next, nil)
	stale := *v1
	save(&stale, vaultkv.ErrConflict) // written over since it was loaded
	if v2 := load("alice", 2); v2.AppPassword != alicePW2 || *v2.Username != login || v2.CreatedAt != 1_800_000_000 ||
		!slices.Equal(v2.Scopes, []string{"notes.read"}) {
		t.Fatalf("version 2: %+v", v2)
	}

	// An operator's soft delete: no record, leftovers; a create writes
	// over them, as the next version.
	s.softDelete("alice")
	absent("alice", true)
	list("alice")
	save(newRecord("alice", alicePW), nil)
	load("alice", 3)

	save(newRecord("bob", alicePW), nil)
	list("alice", "bob")
	if err := s.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	absent("alice", false)
	list("bob")
	if err := s.Delete(ctx, "nobody"); err != nil {
		t.Fatalf("Delete of nothing: %v", err)
	}
	// After Delete the versions start again.
	save(newRecord("alice", alicePW), nil)
	load("alice", 1)
}
