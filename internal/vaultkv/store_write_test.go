package vaultkv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"reflect"
	"sync"
	"testing"
)

// bodyRecorder stands between the store and the dev Vault and keeps the
// body of every PUT, by path.
type bodyRecorder struct {
	URL  string
	mu   sync.Mutex
	puts map[string][]string
}

func newBodyRecorder(t *testing.T, vaultAddr string) *bodyRecorder {
	t.Helper()
	target, err := url.Parse(vaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &bodyRecorder{puts: map[string][]string{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				t.Error(err)
			}
			rec.mu.Lock()
			rec.puts[r.URL.Path] = append(rec.puts[r.URL.Path], string(body))
			rec.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

func (b *bodyRecorder) bodies(path string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.puts[path]...)
}

// decodeJSON decodes s as Vault does (numbers kept as written).
func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v in %s", err, s)
	}
	return v
}

// The write Vault receives is the documented record, field for field and
// type for type (username string or null, scopes list or null, times
// integers), wrapped as KV v2 wants it with the check-and-set version; on
// KV v1 the record alone. What is read back is the same record.
func TestSaveSendsTheDocumentedRecord(t *testing.T) {
	v := vaultServer(t)
	login := "alice@example.com"
	records := map[string]*Record{
		"full": {UserID: "alice", AppPassword: alicePW, Username: &login, Scopes: []string{"notes.read", "notes.write"},
			CreatedAt: 1_800_000_000, UpdatedAt: 1_800_000_060},
		"nulls": {UserID: "bob", AppPassword: alicePW2, CreatedAt: 1_700_000_000, UpdatedAt: 1_700_000_000},
		"empty scopes and odd login": {UserID: "carol", AppPassword: alicePW, Username: new(string), Scopes: []string{},
			CreatedAt: 1, UpdatedAt: 2},
		"escaped login": {UserID: "dave", AppPassword: alicePW, Username: ptr(`<d"ave>&\ü` + "\u2028"), CreatedAt: 1, UpdatedAt: 1},
	}
	want := map[string]string{
		"full": `{"user_id":"alice","app_password":"` + alicePW + `","username":"alice@example.com",` +
			`"scopes":["notes.read","notes.write"],"created_at":1800000000,"updated_at":1800000060}`,
		"nulls":                      `{"user_id":"bob","app_password":"` + alicePW2 + `","username":null,"scopes":null,"created_at":1700000000,"updated_at":1700000000}`,
		"empty scopes and odd login": `{"user_id":"carol","app_password":"` + alicePW + `","username":"","scopes":[],"created_at":1,"updated_at":2}`,
		"escaped login":              `{"user_id":"dave","app_password":"` + alicePW + `","username":"<d\"ave>&\\ü\u2028","scopes":null,"created_at":1,"updated_at":1}`,
	}
	for _, kv := range []int{2, 1} {
		proxy := newBodyRecorder(t, v.Addr)
		s := newStore(t, v, proxy.URL, kv)
		ctx := t.Context()
		for name, orig := range records {
			rec := new(Record)
			*rec = *orig
			if err := s.Save(ctx, rec); err != nil {
				t.Fatalf("kv%d %s: %v", kv, name, err)
			}
			wantRecord := decodeJSON(t, want[name])
			var path string
			var wantBody any
			if kv == 2 {
				path = "/v1/" + s.mount + "/data/" + s.secretPath(rec.UserID)
				wantBody = map[string]any{"data": wantRecord, "options": map[string]any{"cas": json.Number("0")}}
			} else {
				path = "/v1/" + s.mount + "/" + s.secretPath(rec.UserID)
				wantBody = wantRecord
			}
			bodies := proxy.bodies(path)
			if len(bodies) != 1 {
				t.Fatalf("kv%d %s: %d PUTs to %s: %q", kv, name, len(bodies), path, bodies)
			}
			if got := decodeJSON(t, bodies[0]); !reflect.DeepEqual(got, wantBody) {
				t.Errorf("kv%d %s: Vault got\n%s\nwant the fields of\n%s", kv, name, bodies[0], want[name])
			}

			// Read back through Vault's own API, not the store's.
			var readPath string
			if kv == 2 {
				readPath = s.mount + "/data/" + s.secretPath(rec.UserID)
			} else {
				readPath = s.mount + "/" + s.secretPath(rec.UserID)
			}
			sec, err := v.Root.Logical().ReadWithContext(ctx, readPath)
			if err != nil || sec == nil {
				t.Fatalf("kv%d %s: read back: %v", kv, name, err)
			}
			stored := sec.Data
			if kv == 2 {
				stored, _ = sec.Data["data"].(map[string]any)
			}
			if !reflect.DeepEqual(any(stored), wantRecord) {
				t.Errorf("kv%d %s: stored %#v, want %#v", kv, name, stored, wantRecord)
			}
			loaded, err := s.Load(ctx, rec.UserID)
			if err != nil {
				t.Fatal(err)
			}
			// Save leaves rec at the version it wrote, as Load reads it:
			// the delivery checks-and-sets over it again.
			if loaded.Version == 0 || loaded.Version != rec.Version {
				t.Errorf("kv%d %s: Save left version %d, Load reads %d", kv, name, rec.Version, loaded.Version)
			}
			loaded.Version = 0
			if !reflect.DeepEqual(loaded, orig) {
				t.Errorf("kv%d %s: loaded %+v, want %+v", kv, name, loaded, rec)
			}
		}
	}
}

// A re-provisioning sends check-and-set with the version it loaded, and
// the version Vault answered lets the store destroy the older ones.
func TestSaveOverSendsItsVersionAndDestroysOlder(t *testing.T) {
	v := vaultServer(t)
	proxy := newBodyRecorder(t, v.Addr)
	s := newStore(t, v, proxy.URL, 2)
	ctx := t.Context()
	rec := &Record{UserID: "alice", AppPassword: alicePW, CreatedAt: 1, UpdatedAt: 1}
	for range 3 {
		if err := s.Save(ctx, rec); err != nil {
			t.Fatal(err)
		}
		loaded, err := s.Load(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		rec = loaded
		rec.UpdatedAt++
	}
	bodies := proxy.bodies("/v1/" + s.mount + "/data/" + s.secretPath("alice"))
	for i, b := range bodies {
		opts, _ := decodeJSON(t, b).(map[string]any)["options"].(map[string]any)
		if want := json.Number(string(rune('0' + i))); opts["cas"] != want {
			t.Errorf("write %d: options %v, want cas %s", i, opts, want)
		}
	}
	// Versions 1 and 2 destroyed, 3 current.
	destroyed := proxy.bodies("/v1/" + s.mount + "/destroy/" + s.secretPath("alice"))
	if len(destroyed) != 2 {
		t.Fatalf("destroys: %q", destroyed)
	}
	meta, err := v.Root.KVv2(s.mount).GetMetadata(ctx, s.secretPath("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if meta.CurrentVersion != 3 || !meta.Versions["1"].Destroyed || !meta.Versions["2"].Destroyed || meta.Versions["3"].Destroyed {
		t.Errorf("metadata: current %d, versions %+v", meta.CurrentVersion, meta.Versions)
	}
}

// Writes reuse their connection to Vault: a write whose answer is read
// after its context ended would close it, and every provisioning would
// dial Vault again (a TCP handshake for Vault and Caddy each time).
func TestWritesReuseTheirConnection(t *testing.T) {
	v := vaultServer(t)
	for _, kv := range []int{2, 1} {
		s := newStore(t, v, v.Addr, kv)
		var mu sync.Mutex
		dialled := 0
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			if !i.Reused {
				dialled++
			}
		}})
		for i := range 20 {
			if err := s.Save(ctx, &Record{UserID: fmt.Sprint("user-", i), AppPassword: alicePW}); err != nil {
				t.Fatal(err)
			}
		}
		// One connection for the writes; the token's lookup, which runs
		// on its own when the store starts, may need a second.
		if dialled > 2 {
			t.Errorf("kv%d: 20 writes, one after the other, dialled Vault %d times, want at most 2", kv, dialled)
		}
	}
}

func ptr[T any](v T) *T { return &v }
