package caddyapppw

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func mustRouter(t testing.TB, prefix string) router {
	t.Helper()
	rt, err := newRouter(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestRouterMatch(t *testing.T) {
	rt := mustRouter(t, "/api/v1")
	cases := []struct {
		target string
		route  route
		userID string
		ours   bool
	}{
		{"/api/v1/scopes", routeScopes, "", true},
		{"/api/v1/users/alice/app-password", routeAppPassword, "alice", true},
		{"/api/v1/users/alice/access", routeAccess, "alice", true},
		{"/api/v1/users/alice/scopes", routeUserScopes, "alice", true},
		{"/api/v1/users/al%20ice/app-password", routeAppPassword, "al ice", true},
		{"/api/v1/users/a%2Fb/app-password", routeAppPassword, "a/b", true},
		{"/api/v1/users/a/b/app-password", routeAppPassword, "a/b", true},
		{"/api/v1/users//app-password", routeAppPassword, "", true},
		{"/api/v1/users/../app-password", routeAppPassword, "..", true},
		{"/api/v1/users/alice;x/app-password", routeAppPassword, "alice;x", true},
		// Encoded spellings of the API's own segments are still the API,
		// not something for the backend to decode and serve.
		{"/api/v1/users/alice/app%2Dpassword", routeAppPassword, "alice", true},
		{"/%61pi/v1/scopes", routeScopes, "", true},
		// Other spellings that a router reads as a route: refused.
		{"/api/v1/users/app-password", routeInvalidPath, "", true},
		{"/api/v1/%2e%2e/v1/users/alice/access", routeInvalidPath, "", true},
		{"/api/v1/users/alice/app-password/", routeInvalidPath, "", true},
		{"/api/v1/users/alice/%41CCESS", routeInvalidPath, "", true},
		{"/api/v1/users/alice/other", "", "", false},
		{"/api/v1/users/alice", "", "", false},
		{"/api/v1/scopes/x", "", "", false},
		{"/api/v2/scopes", "", "", false},
		{"/mcp", "", "", false},
		{"/", "", "", false},
		{"*", "", "", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL = mustParseTarget(t, c.target)
		got, uid, ok := rt.match(r)
		if got != c.route || uid != c.userID || ok != c.ours {
			t.Errorf("%s: got (%q, %q, %v), want (%q, %q, %v)", c.target, got, uid, ok, c.route, c.userID, c.ours)
		}
	}
}

// TestRouterSpellings: every spelling of apiSpellings is refused, every
// one of idSpellings has an invalid user id (the Caddy test shows both on
// the wire), every path of reallyDifferent is passed on.
func TestRouterSpellings(t *testing.T) {
	rt := mustRouter(t, "/api/v1")
	for _, target := range apiSpellings {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL = mustParseTarget(t, target)
		if got, uid, ok := rt.match(r); got != routeInvalidPath || uid != "" || !ok {
			t.Errorf("%s: got (%q, %q, %v), want invalid path", target, got, uid, ok)
		}
	}
	for _, target := range idSpellings {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL = mustParseTarget(t, target)
		if got, uid, ok := rt.match(r); got == routeInvalidPath || !ok || validUserID(uid) {
			t.Errorf("%s: got (%q, %q, %v), want a route with an invalid user id", target, got, uid, ok)
		}
	}
	for _, target := range reallyDifferent {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL = mustParseTarget(t, target)
		if got, uid, ok := rt.match(r); ok {
			t.Errorf("%s: got (%q, %q, %v), want it passed on", target, got, uid, ok)
		}
	}
}

// mustParseTarget parses a request target as the server does.
func mustParseTarget(t *testing.T, target string) *url.URL {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	return r.URL
}

func TestRouterCustomPrefix(t *testing.T) {
	rt := mustRouter(t, "/mcp/api/")
	if r, uid, ok := rt.match(httptest.NewRequest("GET", "/mcp/api/users/bob/access", nil)); !ok || r != routeAccess || uid != "bob" {
		t.Fatalf("got %q %q %v", r, uid, ok)
	}
	// The MCP server's own copy at /api/v1 stays shadowed.
	for _, target := range []string{"/api/v1/scopes", "/api/v1/users/bob/app-password", "/api/v1/users/bob/access/"} {
		if r, uid, ok := rt.match(httptest.NewRequest("GET", target, nil)); !ok || r != routeInvalidPath || uid != "" {
			t.Errorf("%s: got %q %q %v", target, r, uid, ok)
		}
	}
	if _, _, ok := rt.match(httptest.NewRequest("GET", "/api/v2/scopes", nil)); ok {
		t.Error("/api/v2/scopes matched")
	}
}

// TestRouterRootPrefix: under "/" the routes are /scopes and
// /users/<id>/<action>; the MCP server's own copy at /api/v1 is shadowed.
func TestRouterRootPrefix(t *testing.T) {
	rt := mustRouter(t, "/")
	for target, want := range map[string]route{
		"/scopes":                  routeScopes,
		"/users/bob/app-password":  routeAppPassword,
		"/users/bob/access":        routeAccess,
		"/users/bob/scopes":        routeUserScopes,
		"/scopes/":                 routeInvalidPath,
		"//users/bob/access":       routeInvalidPath,
		"/x/../scopes":             routeInvalidPath,
		"/api/v1/scopes":           routeInvalidPath,
		"/api/v1/users/bob/access": routeInvalidPath,
		"/api/v2/scopes":           "",
		"/mcp":                     "",
		"/":                        "",
	} {
		got, _, ok := rt.match(httptest.NewRequest("GET", target, nil))
		if got != want || ok != (want != "") {
			t.Errorf("%s: got %q %v, want %q", target, got, ok, want)
		}
	}
}

// TestPrefixNormalised: a trailing slash is dropped; a prefix that needs
// cleaning or decoding is refused (through Caddy in
// TestPrefixRefusedAtProvisioning).
func TestPrefixNormalised(t *testing.T) {
	for in, want := range map[string]string{"/api/v1": "/api/v1/", "/api/v1/": "/api/v1/", "/": "/"} {
		if rt := mustRouter(t, in); rt.rawPrefix != want {
			t.Errorf("%q: %q", in, rt.rawPrefix)
		}
	}
	for _, bad := range []string{"", "api/v1", "//", "/api//v1", "/./api", "/api/..", "/a%2Fb", "/a;b", "/a b", `/a\b`, "/a?b", "/é"} {
		if _, err := newRouter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// passThroughPaths are the MCP server's own kinds of path.
var passThroughPaths = []string{"/mcp", "/mcp/", "/sse", "/messages/", "/.well-known/oauth-protected-resource", "/oauth/token", "/api/v1/health"}

// TestRouterPassThroughAllocationFree: deciding that a request is not the
// API's costs no allocation, under the default prefix and under "/".
func TestRouterPassThroughAllocationFree(t *testing.T) {
	for _, prefix := range []string{"/api/v1", "/"} {
		rt := mustRouter(t, prefix)
		for _, p := range passThroughPaths {
			r := httptest.NewRequest("POST", p+"?session_id=abc", nil)
			if _, _, ok := rt.match(r); ok {
				t.Fatalf("%s under %s: matched", p, prefix)
			}
			if n := testing.AllocsPerRun(100, func() { rt.match(r) }); n != 0 {
				t.Errorf("%s under %s: %v allocations", p, prefix, n)
			}
		}
	}
	// /oauth/access_token holds a route's word but not the prefix.
	rt := mustRouter(t, "/api/v1")
	r := httptest.NewRequest("POST", "/oauth/access_token", nil)
	if n := testing.AllocsPerRun(100, func() { rt.match(r) }); n != 0 {
		t.Errorf("/oauth/access_token: %v allocations", n)
	}
}

func BenchmarkRouterPassThrough(b *testing.B) {
	rt := mustRouter(b, "/api/v1")
	r := httptest.NewRequest("POST", "/mcp", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := rt.match(r); ok {
			b.Fatal("matched")
		}
	}
}

// BenchmarkRouterLongOddPath is the worst case: a long path that no fast
// test rules out, read every way.
func BenchmarkRouterLongOddPath(b *testing.B) {
	rt := mustRouter(b, "/api/v1")
	r := httptest.NewRequest("GET", "/api/v1/"+strings.Repeat("a%5Cb;c/..;/%252e/", maxReadPath/19)+"x", nil)
	b.ReportAllocs()
	for b.Loop() {
		rt.match(r)
	}
}
