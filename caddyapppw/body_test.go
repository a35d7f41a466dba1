package caddyapppw

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestBodyScopesNotStrings: a list holding anything but strings is "not a
// list of strings", null elements included; encoding/json alone would read
// a null element as "" and answer "Invalid scopes: ".
func TestBodyScopesNotStrings(t *testing.T) {
	supported, err := newScopeSet(defaultScopes())
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		`{"scopes": ["notes.read", null]}`,
		`{"scopes": [null]}`,
		`{"scopes": [null, null]}`,
		`{"scopes": ["notes.read", 1]}`,
		`{"scopes": [["notes.read"]]}`,
		`{"scopes": [{"a": "notes.read"}]}`,
		`{"scopes": [true]}`,
		`{"scopes": "notes.read"}`,
		`{"scopes": {"0": "notes.read"}}`,
		`{"scopes": 5}`,
	} {
		_, e := parseBody([]byte(body), supported)
		if e != errScopesNotList {
			t.Errorf("%s: got %v, want %q", body, e, errScopesNotList.msg)
		}
	}
	// Still fine: null for the whole list, an empty list, strings.
	for body, want := range map[string][]string{
		`{"scopes": null}`:                        nil,
		`{"scopes": []}`:                          {},
		`{"scopes": ["notes.read", "mail.send"]}`: {"notes.read", "mail.send"},
	} {
		got, e := parseBody([]byte(body), supported)
		if e != nil || strings.Join(got.scopes, ",") != strings.Join(want, ",") || (got.scopes == nil) != (want == nil) {
			t.Errorf("%s: got %v %v, want %v", body, got.scopes, e, want)
		}
	}
}

// TestBodyScopesNullElementAnswer checks the whole answer of a PATCH and a
// POST with a null element.
func TestBodyScopesNullElementAnswer(t *testing.T) {
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+alicePW))
	for _, c := range []struct{ method, path string }{
		{"PATCH", "/api/v1/users/alice/scopes"},
		{"POST", "/api/v1/users/alice/app-password"},
	} {
		r, _ := http.NewRequest(c.method, "http://x"+c.path, strings.NewReader(`{"scopes": ["notes.read", null]}`))
		r.Header.Set("Authorization", auth)
		w := serve(bareHandler(t, zap.NewNop()), r)
		const want = `{"success":false,"error":"scopes must be a list of strings"}`
		if w.Code != http.StatusBadRequest || strings.TrimSpace(w.Body.String()) != want {
			t.Errorf("%s %s: got %d %s, want 400 %s", c.method, c.path, w.Code, w.Body.String(), want)
		}
	}
}
