package caddyapppw

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// failingStore fails every operation the way its err says; with panics
// set it panics with a message that holds the password it was given.
type failingStore struct {
	err    error
	panics bool
}

func (f failingStore) Load(context.Context, string) (*vaultkv.Record, error) { return nil, f.err }
func (f failingStore) Save(_ context.Context, rec *vaultkv.Record) error {
	if f.panics {
		panic("cannot save " + rec.AppPassword)
	}
	return f.err
}
func (f failingStore) Delete(context.Context, string) error { return f.err }
func (f failingStore) DeleteIfUnchanged(context.Context, string, int) error {
	return f.err
}
func (f failingStore) List(context.Context) ([]string, error) { return nil, f.err }

// ncAnswers are Nextcloud's misbehaviours, as in-process round trips.
var ncAnswers = map[string]func(*http.Request) (*http.Response, error){
	"valid":       func(r *http.Request) (*http.Response, error) { return ocsAnswerFor(r), nil },
	"unreachable": func(*http.Request) (*http.Response, error) { return nil, errors.New("dial tcp: connection refused") },
	"500":         func(r *http.Request) (*http.Response, error) { return textAnswer(r, 500, "oops"), nil },
	"html": func(r *http.Request) (*http.Response, error) {
		return textAnswer(r, 200, "<html>maintenance</html>"), nil
	},
	"v1-style 997": func(r *http.Request) (*http.Response, error) {
		return textAnswer(r, 200, `{"ocs":{"meta":{"statuscode":997},"data":[]}}`), nil
	},
	"wrong id": func(r *http.Request) (*http.Response, error) {
		return textAnswer(r, 200, `{"ocs":{"meta":{"statuscode":200},"data":{"id":"mallory"}}}`), nil
	},
	"redirect": func(r *http.Request) (*http.Response, error) {
		resp := textAnswer(r, 302, "")
		resp.Header.Set("Location", "http://evil.invalid/")
		return resp, nil
	},
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func textAnswer(r *http.Request, status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), Request: r}
}

// TestNoSecretInLogsOrAnswers runs every route against every failure of
// Nextcloud and of the store, with debug logging captured, and looks for
// the passwords and Authorization values in everything written.
func TestNoSecretInLogsOrAnswers(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	passwords := []string{alicePW, alicePW2, adminToken}
	var captured strings.Builder

	stores := map[string]store{
		"memory":            nil, // bareHandler's
		"vault down":        failingStore{err: errors.New("unreachable: dial tcp 127.0.0.1:8200: connection refused")},
		"permission denied": failingStore{err: errors.New("permission denied: Code: 403")},
	}
	routes := []struct{ method, path, body string }{
		{"POST", "/api/v1/users/alice/app-password", `{"username":"alice","scopes":["notes.read"]}`},
		{"POST", "/api/v1/users/alice/app-password", `{"scopes":["` + alicePW2 + `x"]}`},
		{"POST", "/api/v1/users/alice/app-password", `{bad json`},
		{"GET", "/api/v1/users/alice/app-password", ""},
		{"DELETE", "/api/v1/users/alice/app-password", ""},
		{"GET", "/api/v1/users/alice/access", ""},
		{"PATCH", "/api/v1/users/alice/scopes", `{"scopes":["deck.read"]}`},
		{"PUT", "/api/v1/users/alice/app-password", ""},
		{"GET", "/api/v1/scopes", ""},
		{"POST", "/api/v1/users/bob/app-password", ""},
		{"POST", "/api/v1/users/a%2Fb/app-password", ""},
	}
	for storeName, store := range stores {
		for ncName, nc := range ncAnswers {
			h := bareHandler(t, logger)
			h.nextcloud.SetTransport(rtFunc(nc))
			if store != nil {
				h.store = store
			}
			for _, rt := range routes {
				for _, pw := range passwords {
					for _, auth := range []string{
						"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+pw)),
						"Basic " + base64.StdEncoding.EncodeToString([]byte("bob:"+pw)),
						"Basic " + base64.StdEncoding.EncodeToString([]byte(pw)), // no colon
					} {
						r := httptest.NewRequest(rt.method, rt.path, strings.NewReader(rt.body))
						r.Header.Set("Authorization", auth)
						w := serve(h, r)
						fmt.Fprintf(&captured, "%s %s %s: %d %v %s\n", storeName, ncName, rt.path, w.Code, w.Header(), w.Body)
					}
				}
			}
		}
	}
	// A panic deep in the handler, with the password in its value.
	h := bareHandler(t, logger)
	h.store = failingStore{panics: true, err: vaultkv.ErrConflict}
	r := httptest.NewRequest("POST", "/api/v1/users/alice/app-password", nil)
	r.SetBasicAuth("alice", alicePW)
	w := serve(h, r)
	if w.Code != 500 || w.Body.String() != `{"success":false,"error":"Internal server error"}` {
		t.Fatalf("panic answered %d %s", w.Code, w.Body)
	}
	fmt.Fprintf(&captured, "panic: %d %v %s\n", w.Code, w.Header(), w.Body)

	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, entry := range logs.All() {
		buf, err := enc.EncodeEntry(entry.Entry, entry.Context)
		if err != nil {
			t.Fatal(err)
		}
		captured.Write(buf.Bytes())
	}
	text := captured.String()
	if logs.Len() < 1000 || !strings.Contains(text, "panic while serving the API") {
		t.Fatalf("only %d log entries captured: the check would prove little", logs.Len())
	}
	// Bodies may echo what the client put in the JSON body (an invalid
	// scope), never what came in Authorization.
	text = strings.ReplaceAll(text, alicePW2+"x", "")
	for _, pw := range passwords {
		for _, f := range secretForms(pw) {
			if strings.Contains(text, f.text) {
				t.Errorf("a log line or an answer holds %s... (%s)", pw[:6], f.form)
			}
		}
	}
	if m := basicAuthValue.FindString(text); m != "" {
		t.Errorf("an Authorization value was logged or answered: %q...", m[:12])
	}

}

// TestStoredPasswordComparedAgainstDummy shows that every route that
// accepts the stored password compares it through secretsEqual (held to
// crypto/subtle by TestSecretsEqualIsCryptoSubtle), exactly once per
// request, and against a dummy when the user has no record: a user without
// a record takes the same path as one with a record and a wrong password,
// so timing cannot tell who has provisioned. A plain == in the handler, or
// a compare skipped when there is no record, fails here.
func TestStoredPasswordComparedAgainstDummy(t *testing.T) {
	type compare struct{ stored, given string }
	var compares []compare
	orig := secretsEqual
	secretsEqual = func(a, b string) bool {
		compares = append(compares, compare{a, b})
		return orig(a, b)
	}
	t.Cleanup(func() { secretsEqual = orig })

	var calls atomic.Int64
	h := bareHandler(t, zap.NewNop())
	h.nextcloud.SetTransport(rtFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		return ocsAnswerFor(r), nil
	}))
	routes := []struct{ method, path, body string }{
		{"GET", "/api/v1/users/alice/app-password", ""},
		{"DELETE", "/api/v1/users/alice/app-password", ""},
		{"GET", "/api/v1/users/alice/access", ""},
		{"PATCH", "/api/v1/users/alice/scopes", `{"scopes":["notes.read"]}`},
	}
	// try sends one request and returns its status, the compares it made
	// and whether it asked Nextcloud.
	try := func(method, path, body, pw string) (int, []compare, bool) {
		compares = nil
		before := calls.Load()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.SetBasicAuth("alice", pw)
		code := serve(h, r).Code
		return code, compares, calls.Load() != before
	}
	for _, rt := range routes {
		_ = h.store.Delete(t.Context(), "alice")
		// No record: the password is compared with a dummy, then
		// Nextcloud decides (it refuses alicePW2).
		code, got, asked := try(rt.method, rt.path, rt.body, alicePW2)
		if code != 401 || len(got) != 1 || got[0].given != alicePW2 || got[0].stored == alicePW || got[0].stored == alicePW2 || !asked {
			t.Fatalf("%s %s, no record: %d, compares %q, asked Nextcloud %v", rt.method, rt.path, code, got, asked)
		}
		_ = h.store.Save(t.Context(), &vaultkv.Record{UserID: "alice", AppPassword: alicePW})
		// A record and a wrong password: the same one compare, then
		// Nextcloud.
		code, got, asked = try(rt.method, rt.path, rt.body, alicePW2)
		if code != 401 || len(got) != 1 || got[0] != (compare{alicePW, alicePW2}) || !asked {
			t.Fatalf("%s %s, record, wrong password: %d, compares %q, asked Nextcloud %v", rt.method, rt.path, code, got, asked)
		}
		// The stored password: one compare, and Nextcloud is spared.
		code, got, asked = try(rt.method, rt.path, rt.body, alicePW)
		if code != 200 || len(got) != 1 || got[0] != (compare{alicePW, alicePW}) || asked {
			t.Fatalf("%s %s, stored password: %d, compares %q, asked Nextcloud %v", rt.method, rt.path, code, got, asked)
		}
	}
}

// countingReader counts what the handler reads of a body.
type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	c.n += len(p)
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestLargeBodiesAreNotRead(t *testing.T) {
	h := bareHandler(t, zap.NewNop())
	// Declared too large: refused before a byte is read.
	body := &countingReader{}
	r := httptest.NewRequest("POST", "/api/v1/users/alice/app-password", io.NopCloser(body))
	r.ContentLength = 10 << 20
	r.SetBasicAuth("alice", alicePW)
	if w := serve(h, r); w.Code != 413 || body.n != 0 {
		t.Fatalf("declared 10 MiB: %d after reading %d bytes", w.Code, body.n)
	}
	// Chunked and endless: refused after 64 KiB and a little.
	body = &countingReader{}
	r = httptest.NewRequest("POST", "/api/v1/users/alice/app-password", io.NopCloser(body))
	r.ContentLength = -1
	r.SetBasicAuth("alice", alicePW)
	if w := serve(h, r); w.Code != 413 || body.n > 2*maxBodyBytes {
		t.Fatalf("endless body: %d after reading %d bytes", w.Code, body.n)
	}
}
