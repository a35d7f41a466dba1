package caddyapppw

import (
	"net/http"
	"net/url"
	"strings"
)

// route names one of the API's endpoints. The name is also the "route"
// field of log lines and metric labels, so it holds no user data.
type route string

const (
	routeAppPassword route = "app-password"
	routeAccess      route = "access"
	routeUserScopes  route = "user-scopes"
	routeScopes      route = "scopes"
)

// methods lists the methods each route answers, in the order of its Allow
// header.
var methods = map[route][]string{
	routeAppPassword: {http.MethodGet, http.MethodPost, http.MethodDelete},
	routeAccess:      {http.MethodGet},
	routeUserScopes:  {http.MethodPatch},
	routeScopes:      {http.MethodGet},
}

// userActions maps the last path segment of a per-user route to the route.
var userActions = map[string]route{
	"app-password": routeAppPassword,
	"access":       routeAccess,
	"scopes":       routeUserScopes,
}

// router recognizes the API's paths below a prefix.
type router struct {
	prefix    []string // decoded segments of the prefix, e.g. ["api", "v1"]
	rawPrefix string   // "/api/v1/", for the allocation-free fast path
}

func newRouter(prefix string) router {
	trimmed := strings.Trim(prefix, "/")
	return router{prefix: strings.Split(trimmed, "/"), rawPrefix: "/" + trimmed + "/"}
}

// match reports whether r is for the API and, if so, which route and the
// raw user id (still to be validated; empty for /scopes).
//
// Segments are compared after percent-decoding each one on its own, so
// "/api/v1/users/bob/app%2Dpassword" is caught here rather than passed to
// the MCP server, whose own router would decode it. Everything between
// "users/" and the action belongs to the user id: a path with a "/" in
// the id (encoded or not) is this API's 400, never the backend's business.
func (rt router) match(r *http.Request) (route, string, bool) {
	path := r.URL.EscapedPath()
	// Pass-through traffic is nearly all of it: decide without allocating
	// when the path cannot spell the prefix, even encoded.
	if !strings.HasPrefix(path, rt.rawPrefix) && !strings.Contains(path, "%") {
		return "", "", false
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(segs) <= len(rt.prefix) {
		return "", "", false
	}
	for i, p := range rt.prefix {
		if unescape(segs[i]) != p {
			return "", "", false
		}
	}
	rest := segs[len(rt.prefix):]
	if len(rest) == 1 && unescape(rest[0]) == "scopes" {
		return routeScopes, "", true
	}
	if len(rest) < 3 || unescape(rest[0]) != "users" {
		return "", "", false
	}
	rte, ok := userActions[unescape(rest[len(rest)-1])]
	if !ok {
		return "", "", false
	}
	ids := rest[1 : len(rest)-1]
	for i := range ids {
		ids[i] = unescape(ids[i])
	}
	return rte, strings.Join(ids, "/"), true
}

// unescape percent-decodes one path segment. The server has already
// refused malformed escapes, so an error cannot happen; should one, the
// segment is kept as it is, which matches nothing.
func unescape(seg string) string {
	if !strings.Contains(seg, "%") {
		return seg
	}
	if s, err := url.PathUnescape(seg); err == nil {
		return s
	}
	return seg
}
