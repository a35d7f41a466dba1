package caddyapppw

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/zap"
)

// The fuzz targets run their seeds (here and in testdata/fuzz) with every
// `go test`; scripts/test also fuzzes each one briefly. For longer runs:
//
//	go test -run '^$' -fuzz FuzzHandler -fuzztime 10m ./caddyapppw

func FuzzBasicAuth(f *testing.F) {
	for _, s := range []string{"", "Basic YWxpY2U6cHc=", "basic YWxpY2U6", "Basic /w==", "Basic", "Bearer x", "Basic YTpiOmM=", "Basic  YTpi "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{header}
		user, pw, e := basicAuth(r)
		if e != nil {
			if user != "" || pw != "" || (e != errMissingAuth && e != errBadAuthFormat) {
				t.Fatalf("%q: error %v with %q %q", header, e, user, pw)
			}
			return
		}
		if strings.Contains(user, ":") || !utf8.ValidString(user+pw) {
			t.Fatalf("%q: user %q", header, user)
		}
		// What was accepted is exactly what the header encodes.
		dec, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(header[len("Basic "):]))
		if string(dec) != user+":"+pw {
			t.Fatalf("%q decoded to %q %q", header, user, pw)
		}
	})
}

// FuzzRouter checks match against models of lenient routers
// (routes_oracle_test.go), under the default prefix and under "/": a path
// that any of them routes to an API route, or to the MCP server's own copy
// at /api/v1, is the module's and never passed on; a path the module serves as a route, with a valid user id, every
// model that routes it at all routes to that same route and user.
func FuzzRouter(f *testing.F) {
	for _, s := range []string{"/api/v1/users/alice/app-password", "/api/v1/users/a%2Fb/access", "/api/v1/scopes",
		"/api/v1/users/%2E%2E/scopes", "/%61pi/v1/users/x/app%2Dpassword", "/api/v1/users//app-password", "/mcp", "/api/v1/users/a/b/c/scopes"} {
		f.Add(s)
	}
	for _, list := range [][]string{apiSpellings, idSpellings, reallyDifferent} {
		for _, s := range list {
			f.Add(s)
		}
	}
	routers := map[string]router{}
	for _, prefix := range []string{"/api/v1", "/"} {
		rt, err := newRouter(prefix)
		if err != nil {
			f.Fatal(err)
		}
		routers[prefix] = rt
	}
	f.Fuzz(func(t *testing.T, target string) {
		r, err := http.NewRequest("GET", "http://x"+target, nil)
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		escaped := r.URL.EscapedPath()
		for prefix, rt := range routers {
			route, userID, ok := rt.match(r)
			if !ok {
				if route != "" || userID != "" {
					t.Fatalf("%q: no match but %q %q", target, route, userID)
				}
			} else if _, known := methods[route]; !known && route != routeInvalidPath {
				t.Fatalf("%q: unknown route %q", target, route)
			}
			// A user id that passes validation is one safe Vault path segment.
			if validUserID(userID) && (strings.ContainsAny(userID, "/\x00") || userID == ".." || userID == ".") {
				t.Fatalf("%q: valid user id %q is not one segment", target, userID)
			}
			served := ok && route != routeInvalidPath && (route == routeScopes || validUserID(userID))
			for _, m := range routerModels {
				read := m.read(escaped)
				// The MCP server's own copy at /api/v1 is never passed on either.
				if _, _, landed := lands(read, mcpServerPrefix, m.fold); landed && !ok {
					t.Fatalf("prefix %s: %q reads as %q to %s, the MCP server's route, but is passed on", prefix, target, read, m.name)
				}
				lr, luid, landed := lands(read, prefix, m.fold)
				if !landed {
					continue
				}
				if !ok {
					t.Fatalf("prefix %s: %q reads as %q to %s, an API route, but is passed on", prefix, target, read, m.name)
				}
				if served && (lr != route || luid != userID && route != routeScopes) {
					t.Fatalf("prefix %s: %q is served as %s for %q, but %s reads it as %s for %q", prefix, target, route, userID, m.name, lr, luid)
				}
			}
		}
	})
}

func FuzzParseBody(f *testing.F) {
	for _, s := range []string{"", "{}", `{"username":"a"}`, `{"scopes":["notes.read"]}`, `{"scopes":null,"username":null}`,
		`{"scopes":"x"}`, `[1]`, `{"username":5}`, `{"scopes":["a","a"]}`, "{\"username\":\"\xff\"}", `{"a":1} x`} {
		f.Add([]byte(s))
	}
	supported, _ := newScopeSet(defaultScopes())
	f.Fuzz(func(t *testing.T, data []byte) {
		body, e := parseBody(data, supported)
		if e != nil {
			if e.status != http.StatusBadRequest {
				t.Fatalf("%q: status %d", data, e.status)
			}
			return
		}
		if body.username != nil && (*body.username == "" || utf8.RuneCountInString(*body.username) > maxUsernameLen) {
			t.Fatalf("%q: username %q accepted", data, *body.username)
		}
		if len(supported.unknown(body.scopes)) > 0 || body.hasScopes != (body.scopes != nil) {
			t.Fatalf("%q: scopes %v", data, body.scopes)
		}
	})
}

// FuzzHandler drives the whole handler: random method, path, Authorization
// and body, against a memory store. It must never panic, must answer every
// API path with the API's JSON and a status docs/API.md names, and must never
// echo the password of the Authorization header.
func FuzzHandler(f *testing.F) {
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+alicePW))
	f.Add("POST", "/api/v1/users/alice/app-password", auth, `{"username":"alice"}`)
	f.Add("GET", "/api/v1/users/alice/app-password", auth, "")
	f.Add("DELETE", "/api/v1/users/alice/app-password", auth, "")
	f.Add("PATCH", "/api/v1/users/alice/scopes", auth, `{"scopes":["notes.read"]}`)
	f.Add("GET", "/api/v1/users/alice/access", auth, "")
	f.Add("GET", "/api/v1/scopes", "", "")
	f.Add("PUT", "/api/v1/users/bob/app-password", "Basic Ym9iOnNlY3JldC1zZWNyZXQ=", "{")
	f.Add("POST", "/mcp", auth, `{"jsonrpc":"2.0"}`)
	statuses := []int{200, 400, 401, 403, 404, 405, 413, 429, 502, 503}
	f.Fuzz(func(t *testing.T, method, path, authz, body string) {
		r, err := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		r.Header["Authorization"] = []string{authz}
		h := bareHandler(t, zap.NewNop())
		_, _, isAPI := h.router.match(r)
		w := serve(h, r)
		if !isAPI {
			if w.Code != http.StatusTeapot {
				t.Fatalf("%s %q: not passed on (%d)", method, path, w.Code)
			}
			return
		}
		if !slices.Contains(statuses, w.Code) || !isAPIAnswer(w) {
			t.Fatalf("%s %q: %d %q", method, path, w.Code, w.Body.String())
		}
		// The password must not come back. It may be a word the API says
		// anyway ("true"): the same request with another password of the
		// same length, on a fresh handler, tells those apart.
		user, pw, e := basicAuth(r)
		if e != nil || pw == "" || strings.Contains(body+path, pw) || !strings.Contains(w.Body.String(), pw) {
			return
		}
		other := strings.Repeat("\x01", len(pw))
		r2, _ := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
		r2.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+other)))
		if w2 := serve(bareHandler(t, zap.NewNop()), r2); !strings.Contains(w2.Body.String(), pw) {
			t.Fatalf("%s %q: the answer echoes the password: %s", method, path, w.Body.String())
		}
	})
}
