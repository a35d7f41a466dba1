package caddyapppw

import (
	"net/http/httptest"
	"testing"
)

func TestRouterMatch(t *testing.T) {
	rt := newRouter("/api/v1")
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
		// Encoded spellings of the API's own segments are still the API,
		// not something for the backend to decode and serve.
		{"/api/v1/users/alice/app%2Dpassword", routeAppPassword, "alice", true},
		{"/%61pi/v1/scopes", routeScopes, "", true},
		{"/api/v1/users/alice/other", "", "", false},
		{"/api/v1/users/alice", "", "", false},
		{"/api/v1/scopes/x", "", "", false},
		{"/api/v2/scopes", "", "", false},
		{"/mcp", "", "", false},
		{"/", "", "", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.target, nil)
		got, uid, ok := rt.match(r)
		if got != c.route || uid != c.userID || ok != c.ours {
			t.Errorf("%s: got (%q, %q, %v), want (%q, %q, %v)", c.target, got, uid, ok, c.route, c.userID, c.ours)
		}
	}
}

func TestRouterCustomPrefix(t *testing.T) {
	rt := newRouter("/mcp/api/")
	if r, uid, ok := rt.match(httptest.NewRequest("GET", "/mcp/api/users/bob/access", nil)); !ok || r != routeAccess || uid != "bob" {
		t.Fatalf("got %q %q %v", r, uid, ok)
	}
	if _, _, ok := rt.match(httptest.NewRequest("GET", "/api/v1/scopes", nil)); ok {
		t.Fatal("default prefix matched under a custom one")
	}
}

func BenchmarkRouterPassThrough(b *testing.B) {
	rt := newRouter("/api/v1")
	r := httptest.NewRequest("POST", "/mcp", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := rt.match(r); ok {
			b.Fatal("matched")
		}
	}
}
