package caddyapppw

import (
	"encoding/hex"
	"path"
	"regexp"
	"strings"
)

// The oracle of FuzzRouter: models, written independently of routes.go,
// of what routers, frameworks and proxies in front of or inside the MCP
// server make of a request path. Each takes the escaped path as Caddy
// forwards it and returns the path it routes on.

var percentEscape = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)

// unquote decodes as Python's urllib.parse.unquote (uvicorn): every
// escape, "%2F" too; a "%" that starts no escape stays.
func unquote(p string) string {
	return percentEscape.ReplaceAllStringFunc(p, func(m string) string {
		b, _ := hex.DecodeString(m[1:])
		return string(b)
	})
}

// dropSegmentParams drops ";..." from every segment.
func dropSegmentParams(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return strings.Join(segs, "/")
}

// normalize merges slashes, resolves dot segments and drops a trailing
// slash, as nginx, Go's path.Clean and most proxies do.
func normalize(p string) string { return path.Clean("/" + p) }

// whatwg is the WHATWG URL parser (Node, browsers, JavaScript proxies): "\"
// is "/", and "." and ".." segments, "%2e" spellings included, are
// resolved; nothing is decoded.
func whatwg(p string) string {
	var out []string
	for _, s := range strings.Split(strings.ReplaceAll(p, `\`, "/"), "/") {
		switch strings.ToLower(s) {
		case ".", "%2e":
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}

// starlette is uvicorn and Starlette: the whole path decoded, routed as it
// is, a trailing slash redirected away; its patterns end in "$", matched
// with Python's re.match, which also matches before a final newline.
func starlette(p string) string {
	p = unquote(p)
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return strings.TrimSuffix(p, "\n")
}

// stripControls is a router or proxy that drops control bytes (C0, DEL)
// from the decoded path before it routes.
func stripControls(p string) string {
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return -1
		}
		return c
	}, p)
}

type routerModel struct {
	name string
	read func(string) string
	fold bool // compares the routes' words without regard to case
}

var routerModels = []routerModel{
	{"starlette", starlette, false},
	// The lenient router: decode, drop ;params, merge slashes,
	// resolve dot segments, drop a trailing slash.
	{"lenient", func(p string) string { return normalize(dropSegmentParams(unquote(p))) }, false},
	// Tomcat, Jetty, Spring: ;params dropped from the raw segments, then
	// decoded and normalised ("..;/" is their classic).
	{"tomcat", func(p string) string { return normalize(unquote(dropSegmentParams(p))) }, false},
	// nginx normalises the decoded path; proxying to a URI it forwards it
	// decoded, where a decoded "?" or "#" ends the path.
	{"nginx", func(p string) string {
		s, _, _ := strings.Cut(unquote(p), "?")
		s, _, _ = strings.Cut(s, "#")
		return starlette(normalize(s))
	}, false},
	{"whatwg+starlette", func(p string) string { return starlette(whatwg(p)) }, false},
	// IIS: decodes twice, "\" is "/", normalises, folds case.
	{"iis", func(p string) string { return normalize(strings.ReplaceAll(unquote(unquote(p)), `\`, "/")) }, true},
	// A lenient router that also drops control bytes.
	{"controls dropped", func(p string) string { return normalize(stripControls(unquote(p))) }, false},
	// Two lenient hops, the second decoding again.
	{"lenient twice", func(p string) string {
		once := normalize(dropSegmentParams(unquote(p)))
		return normalize(dropSegmentParams(unquote(once)))
	}, false},
}

// lands reports the route, and the user id, that a routed path p is under
// prefix, as Starlette matches "{prefix}/users/{user_id}/app-password":
// one non-empty segment for the id.
func lands(p, prefix string, fold bool) (route, string, bool) {
	eq := func(a, b string) bool { return a == b || fold && strings.EqualFold(a, b) }
	var want []string
	if pre := strings.Trim(prefix, "/"); pre != "" {
		want = strings.Split(pre, "/")
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	n := len(want)
	if len(segs) != n+1 && len(segs) != n+3 {
		return "", "", false
	}
	for i, w := range want {
		if !eq(segs[i], w) {
			return "", "", false
		}
	}
	if len(segs) == n+1 {
		if eq(segs[n], "scopes") {
			return routeScopes, "", true
		}
		return "", "", false
	}
	if !eq(segs[n], "users") || segs[n+1] == "" {
		return "", "", false
	}
	switch {
	case eq(segs[n+2], "app-password"):
		return routeAppPassword, segs[n+1], true
	case eq(segs[n+2], "access"):
		return routeAccess, segs[n+1], true
	case eq(segs[n+2], "scopes"):
		return routeUserScopes, segs[n+1], true
	}
	return "", "", false
}
