package caddyapppw

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
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
	// routeInvalidPath is a spelling of a route other than its own, such
	// as "/api/v1/scopes/": the module answers it 400 "Invalid path".
	routeInvalidPath route = "invalid-path"
)

// errInvalidPath answers a path that some router would read as one of the
// API's routes, spelled otherwise than the route itself.
var errInvalidPath = &apiError{status: http.StatusBadRequest, msg: "Invalid path", outcome: "invalid_path"}

// methods lists the methods each route answers, in the order of its Allow
// header.
var methods = map[route][]string{
	routeAppPassword: {http.MethodGet, http.MethodPost, http.MethodDelete},
	routeAccess:      {http.MethodGet},
	routeUserScopes:  {http.MethodPatch},
	routeScopes:      {http.MethodGet},
}

// userActions maps the last path segment of a per-user route to the route.
var userActions = []struct {
	word  string
	route route
}{
	{"app-password", routeAppPassword},
	{"access", routeAccess},
	{"scopes", routeUserScopes},
}

// router recognizes the API's paths below a prefix.
//
// The MCP server behind the module still serves its own copy of the
// API's routes, with its own limiter and database and no Vault. So a
// path is the module's not only when it is spelled as a route, but when
// any router, framework or proxy between Caddy and the MCP server, or the
// MCP server itself, would read it as one: uvicorn decodes %2F before
// Starlette routes, Starlette redirects a trailing slash, nginx merges
// slashes and resolves dot segments, Tomcat and Spring drop ";params",
// WHATWG URL parsers take "\" for "/" and "%2e" for ".", IIS folds case
// and may decode twice. match tries each of those readings; the exact
// spelling is served, every other spelling that lands on a route is
// answered 400 "Invalid path", and nothing that lands on a route is
// passed on.
//
// The MCP server's own copy lives at /api/v1 whatever the module's prefix.
// Under another prefix, the router also shadows it: what lands there is
// answered 400 "Invalid path" too, so a custom prefix does not open the
// MCP server's routes around the module's limit and store.
type router struct {
	prefix    []string // segments of the prefix, e.g. ["api", "v1"]; none for "/"
	rawPrefix string   // "/api/v1/" ("/" for "/"), for the fast path
	shadow    *router  // the MCP server's own prefix, when it is not this one
}

// mcpServerPrefix is where the MCP server registers its own copy of the
// routes.
const mcpServerPrefix = "/api/v1"

// newRouter checks and normalises a prefix: "/", or segments of letters,
// digits and "-._~" between single slashes, a trailing slash ignored. A
// prefix that itself needs cleaning or decoding would have no one
// spelling to serve.
func newRouter(prefix string) (router, error) {
	if !strings.HasPrefix(prefix, "/") {
		return router{}, fmt.Errorf("%q must start with /", prefix)
	}
	rt := router{rawPrefix: "/"}
	if prefix != "/" {
		trimmed := strings.TrimSuffix(prefix[1:], "/")
		rt.prefix = strings.Split(trimmed, "/")
		for _, s := range rt.prefix {
			if s == "" || s == "." || s == ".." || strings.IndexFunc(s, notUnreserved) >= 0 {
				return router{}, fmt.Errorf("%q is not a plain path: segments of letters, digits and - . _ ~ between single slashes", prefix)
			}
		}
		rt.rawPrefix = "/" + trimmed + "/"
	}
	if rt.rawPrefix != mcpServerPrefix+"/" {
		rt.shadow = &router{prefix: strings.Split(mcpServerPrefix[1:], "/"), rawPrefix: mcpServerPrefix + "/"}
	}
	return rt, nil
}

func notUnreserved(c rune) bool {
	return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("-._~", c))
}

// match reports whether r is for the API and, if so, which route and the
// raw user id (still to be validated; empty for /scopes and for
// routeInvalidPath).
//
// The exact spelling is the prefix, then "scopes" or "users/<id>/<action>",
// each segment compared after percent-decoding it on its own, so
// "/api/v1/users/bob/app%2Dpassword" is the route. Everything between
// "users/" and the action belongs to the user id: a path with a "/" in the
// id (encoded or not) is this API's 400 Invalid user_id. A route spelled
// so has one reading only: with a valid user id, every router reads the
// same route and the same user.
func (rt router) match(r *http.Request) (route, string, bool) {
	path := r.URL.EscapedPath()
	// Pass-through traffic is nearly all of it: decide without allocating
	// when no reading can turn the path into a route.
	if rt.cannotBeAPI(path) && (rt.shadow == nil || rt.shadow.cannotBeAPI(path)) {
		return "", "", false
	}
	if rte, uid, ok := rt.exact(path); ok {
		return rte, uid, true
	}
	if len(path) > maxReadPath || rt.anyReading(path) || rt.shadow != nil && rt.shadow.anyReading(path) {
		return routeInvalidPath, "", true
	}
	return "", "", false
}

// maxReadPath bounds the paths read every way: trying each reading of a
// path costs some dozens of passes over it, which an attacker must not get
// for a megabyte of request line. A longer path that the fast test does
// not rule out is refused; an API route or an MCP server path is a few
// dozen bytes.
const maxReadPath = 4096

// cannotBeAPI is the allocation-free test. Without a percent-escape
// nothing decodes, so a route needs one of its words in the path as it
// stands (in any case, since some routers fold it); and a path with no
// ";", "\", "//" or dot segment reads the same in every router but for
// case and a trailing slash, so it must start with the prefix.
func (rt router) cannotBeAPI(path string) bool {
	if strings.IndexByte(path, '%') >= 0 {
		return false
	}
	if !containsFold(path, "scopes") && !containsFold(path, "access") && !containsFold(path, "app-password") {
		return true
	}
	plain := !strings.ContainsAny(path, ";\\") && !strings.Contains(path, "//") &&
		!strings.Contains(path, "/./") && !strings.Contains(path, "/../") &&
		!strings.HasSuffix(path, "/.") && !strings.HasSuffix(path, "/..")
	return plain && !hasPrefixFold(path, rt.rawPrefix)
}

// exact matches the path as spelled, each segment decoded on its own.
func (rt router) exact(path string) (route, string, bool) {
	if !strings.HasPrefix(path, "/") {
		return "", "", false
	}
	segs := strings.Split(path[1:], "/")
	for i := range segs {
		segs[i] = unescape(segs[i])
	}
	rte, ids, ok := rt.route(segs, false)
	if !ok || rte != routeScopes && len(ids) == 0 {
		return "", "", false
	}
	return rte, strings.Join(ids, "/"), true
}

// route matches segments against the API: the prefix, then "scopes", or
// "users", the id's segments (any number), and an action. fold compares the
// API's words without regard to case.
func (rt router) route(segs []string, fold bool) (route, []string, bool) {
	eq := func(s, word string) bool { return s == word || fold && strings.EqualFold(s, word) }
	n := len(rt.prefix)
	if len(segs) <= n {
		return "", nil, false
	}
	for i, p := range rt.prefix {
		if !eq(segs[i], p) {
			return "", nil, false
		}
	}
	rest := segs[n:]
	if len(rest) == 1 && eq(rest[0], "scopes") {
		return routeScopes, nil, true
	}
	if len(rest) < 2 || !eq(rest[0], "users") {
		return "", nil, false
	}
	last := rest[len(rest)-1]
	for _, a := range userActions {
		if eq(last, a.word) {
			return a.route, rest[1 : len(rest)-1], true
		}
	}
	return "", nil, false
}

// anyReading reports whether some reading of path lands on a route. A
// reading is one way a router turns a path into segments; all of them
// merge repeated slashes and ignore a trailing one, and they differ in:
//
//   - ";params": kept, dropped from the raw segments (Tomcat, Spring), or
//     dropped after decoding;
//   - decoding: each segment on its own, or the whole path before it is
//     split, so that %2F separates, with a decoded "?" or "#" kept as a
//     character (uvicorn, which splits the query off first: Starlette
//     routes "/api%2Fv1/users/a%3Fb/access" for the user "a?b") or ending
//     the path (a proxy that forwards paths decoded); once, or twice for a
//     chain of two decoders;
//   - "\": a character, or a separator (WHATWG URL parsers, IIS);
//   - dot segments: kept, or resolved after decoding, with repeated
//     slashes merged first (nginx, path.Clean) or, as RFC 3986 and WHATWG
//     URL parsers do, with each empty segment counted ("/a//../b" is
//     "/a/b"; WHATWG also reads "%2e" as ".");
//   - control characters (C0 and DEL, NUL too) in the decoded path: kept,
//     or dropped. Starlette matches its route patterns with Python's
//     re.match, whose "$" also matches before a final newline, and uvicorn
//     decodes %0A before routing, so ".../app-password%0A" is the route to
//     the MCP server; other routers and proxies trim or strip such bytes.
//     No route is spelled with one, so a path that lands on a route once
//     they are dropped is the module's;
//
// and the API's words are compared without regard to case (IIS). Only
// the readings that can differ for this path are tried: each decoding of
// it is done once, and the rest are passes over its segments.
func (rt router) anyReading(path string) bool {
	once := decodeAll(path)
	twice := decodeAll(once)
	wholes, decodes := []int{bySegment}, []int{1}
	if once != path {
		wholes = []int{bySegment, wholeKept}
		if strings.ContainsAny(twice, "?#") {
			wholes = append(wholes, wholeCut)
		}
	}
	if twice != once {
		decodes = []int{1, 2}
	}
	backslashes := []bool{false}
	if strings.IndexByte(twice, '\\') >= 0 {
		backslashes = []bool{false, true}
	}
	rawParams, decodedParams := []bool{false}, []bool{false}
	if strings.IndexByte(twice, ';') >= 0 {
		rawParams, decodedParams = []bool{false, true}, []bool{false, true}
	}
	controls := []bool{false}
	if hasControl(twice) {
		controls = []bool{false, true}
	}
	var segs, stack []string
	for _, rawp := range rawParams {
		base := path
		if rawp {
			base = dropParams(path)
		}
		for _, whole := range wholes {
			for _, d := range decodes {
				segs = split(base, whole, d, segs[:0])
				for _, ctl := range controls {
					if ctl {
						for i := range segs {
							segs[i] = dropControls(segs[i])
						}
					}
					for _, bs := range backslashes {
						for _, decp := range decodedParams {
							if rawp && decp {
								continue
							}
							for _, dots := range []int{dotsKept, dotsMerged, dotsRFC} {
								stack = walk(segs, bs, decp, dots, stack[:0])
								if _, _, ok := rt.route(stack, true); ok {
									return true
								}
							}
						}
					}
				}
			}
		}
	}
	return false
}

// How a reading decodes a path.
const (
	bySegment = iota // each segment on its own
	wholeKept        // the whole path, a decoded "?" or "#" kept in it (uvicorn)
	wholeCut         // the whole path, cut at a decoded "?" or "#" (a proxy that forwards it decoded)
)

// split decodes path n times, as whole says, and splits it at "/".
func split(path string, whole int, n int, out []string) []string {
	if whole != bySegment {
		for range n {
			path = decodeAll(path)
		}
	}
	if whole == wholeCut {
		if i := strings.IndexAny(path, "?#"); i >= 0 {
			path = path[:i]
		}
	}
	for seg := range strings.SplitSeq(path, "/") {
		if whole == bySegment {
			for range n {
				seg = decodeAll(seg)
			}
		}
		out = append(out, seg)
	}
	return out
}

// How a reading treats dot segments.
const (
	dotsKept   = iota // "." and ".." are names
	dotsMerged        // resolved, empty segments merged away first
	dotsRFC           // resolved, each empty segment counted
)

// walk turns decoded segments into the ones a router routes on: "\"
// splitting them if backslash, ";params" dropped if params, dot segments
// resolved as dots says, and empty segments merged away.
func walk(segs []string, backslash, params bool, dots int, out []string) []string {
	for _, seg := range segs {
		for backslash && strings.IndexByte(seg, '\\') >= 0 {
			i := strings.IndexByte(seg, '\\')
			out = push(out, seg[:i], params, dots)
			seg = seg[i+1:]
		}
		out = push(out, seg, params, dots)
	}
	if dots == dotsRFC {
		out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	}
	return out
}

func push(out []string, seg string, params bool, dots int) []string {
	if params {
		seg, _, _ = strings.Cut(seg, ";")
	}
	switch {
	case seg == "" && dots != dotsRFC:
		return out
	case dots != dotsKept && seg == ".":
		return out
	case dots != dotsKept && seg == "..":
		if len(out) > 0 {
			out = out[:len(out)-1]
		}
		return out
	}
	return append(out, seg)
}

// isControl reports the bytes no route is spelled with and some router
// drops or trims: C0 controls, NUL and newline among them, and DEL.
func isControl(c byte) bool { return c < 0x20 || c == 0x7f }

// hasControl reports whether s holds a control byte.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if isControl(s[i]) {
			return true
		}
	}
	return false
}

// dropControls removes every control byte from s, byte by byte: a decoded
// path need not be UTF-8.
func dropControls(s string) string {
	if !hasControl(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if !isControl(s[i]) {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// dropParams drops ";..." up to the next "/" from every segment.
func dropParams(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		i := strings.IndexByte(s, ';')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i:]
		if j := strings.IndexByte(s, '/'); j >= 0 {
			s = s[j:]
		} else {
			s = ""
		}
	}
	return b.String()
}

// decodeAll decodes every valid percent-escape of s and keeps any other
// "%" as it is, as Python's urllib.parse.unquote does: after one decoding
// a path may hold a "%" that is no escape.
func decodeAll(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// containsFold reports whether s holds word in any ASCII case.
func containsFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(word)], word) {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
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
