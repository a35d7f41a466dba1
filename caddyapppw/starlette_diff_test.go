package caddyapppw

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The differential test of the router against the real thing: the MCP
// server routes with Starlette behind uvicorn, so a path is the module's
// when real Starlette routes it to one of the API's handlers, whatever our
// own models (routes_oracle_test.go) say. testdata/starlette_routes.py is
// the route table of docs/API.md as Starlette routes; Debian's
// python3-starlette and python3-uvicorn run it (scripts/test installs
// them).

// debianPython is Debian's interpreter, which sees Debian's python3-*
// packages; the python3 on PATH may be another one.
const debianPython = "/usr/bin/python3"

// starletteApp is a running uvicorn serving one application of
// testdata/starlette_routes.py.
type starletteApp struct {
	name   string
	addr   string
	stderr *bytes.Buffer
}

// startStarlette runs the route table under uvicorn on a socket the test
// listens on already (uvicorn --fd), so requests queue until it serves
// them and nothing waits for it to come up. Without Debian's packages the
// test fails, except in the fast lane (-short), which skips it saying so.
func startStarlette(t *testing.T, name string) *starletteApp {
	t.Helper()
	if out, err := exec.Command(debianPython, "-c", "import starlette, uvicorn").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("the real-Starlette oracle needs Debian's python3-starlette and python3-uvicorn under %s (scripts/test installs them): %v %s", debianPython, err, out)
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	app := &starletteApp{name: name, addr: ln.Addr().String(), stderr: &bytes.Buffer{}}
	cmd := exec.Command(debianPython, "-m", "uvicorn", "--app-dir", dir, "--fd", "3",
		"--log-level", "warning", "--no-access-log", "starlette_routes:"+name)
	cmd.ExtraFiles = []*os.File{f} // fd 3
	cmd.Stderr = app.stderr
	cmd.Stdout = app.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// uvicorn holds the socket now; the test's copies are not needed.
	f.Close()
	ln.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("uvicorn's output (%s):\n%s", name, app.stderr)
		}
	})
	return app
}

// routed asks Starlette what it makes of target, sent byte for byte. A
// route's handler answers its name and user id; 405 is a path that
// matched a route of another method; both reach the MCP server's route.
// 307 is Starlette's trailing-slash redirect, sent when the other spelling
// matches a route or a Mount: its Location is followed, once, as a client
// that follows redirects does.
func (s *starletteApp) routed(t *testing.T, target string) (string, bool) {
	t.Helper()
	return s.routedHops(t, target, 1)
}

func (s *starletteApp) routedHops(t *testing.T, target string, hops int) (string, bool) {
	t.Helper()
	status, header, body, err := rawGet(s.addr, target)
	if err != nil {
		t.Fatalf("Starlette, GET %q: %v\n%s", target, err, s.stderr)
	}
	switch status {
	case http.StatusOK:
		var m struct {
			Route  string `json:"route"`
			UserID string `json:"user_id"`
		}
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("Starlette, GET %q: %d %q", target, status, body)
		}
		return fmt.Sprintf("%s for %q (%s)", m.Route, m.UserID, s.name), true
	case http.StatusMethodNotAllowed:
		return "a route of another method (" + s.name + ")", true
	case http.StatusTemporaryRedirect:
		loc, err := url.Parse(header.Get("Location"))
		if err != nil || hops == 0 {
			return "", false
		}
		if what, ok := s.routedHops(t, loc.RequestURI(), hops-1); ok {
			return what + ", after its trailing-slash redirect to " + loc.RequestURI(), true
		}
	}
	return "", false
}

// starletteApps are the route table registered both ways; a path is
// routed when either routes it.
type starletteApps []*starletteApp

func (apps starletteApps) routed(t *testing.T, target string) (string, bool) {
	t.Helper()
	for _, app := range apps {
		if what, ok := app.routed(t, target); ok {
			return what, true
		}
	}
	return "", false
}

// rawGet sends GET target on a connection of its own, target written on
// the wire as it is (Go's client would normalise it), and reads the
// answer whole.
func rawGet(addr, target string) (int, http.Header, string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, nil, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nAccept: application/json\r\n\r\n", target, addr); err != nil {
		return 0, nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), err
}

// TestStarletteDifferential sends every generated spelling, raw, to real
// Starlette and through Caddy (the module from a Caddyfile, reverse_proxy
// to the recording backend). A path Starlette routes to an API handler
// never reaches the backend, and no path the backend receives (as Caddy
// forwards it, re-escaped or not) is one Starlette routes. Under the
// default prefix and under "prefix /", where the module shadows the MCP
// server's /api/v1 copy. STARLETTE_DIFF_PATHS sets how many paths are
// generated beyond the seeds (default 3000), STARLETTE_DIFF_SEED their
// random seed (default 19): a longer hunt is
//
//	STARLETTE_DIFF_PATHS=20000 STARLETTE_DIFF_SEED=7 go test -run TestStarletteDifferential ./caddyapppw
func TestStarletteDifferential(t *testing.T) {
	app := starletteApps{startStarlette(t, "app"), startStarlette(t, "mounted")}
	n := 3000
	if v := os.Getenv("STARLETTE_DIFF_PATHS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("STARLETTE_DIFF_PATHS=%q: %v", v, err)
		}
	}
	seed := uint64(19)
	if v := os.Getenv("STARLETTE_DIFF_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("STARLETTE_DIFF_SEED=%q: %v", v, err)
		}
	}
	paths := differentialPaths(n, rand.New(rand.NewPCG(seed, 0xA)))

	// The oracle is alive and is Starlette as the issue measured it: the
	// route, and its %0A spelling, are routes to both registrations.
	for _, a := range app {
		for _, target := range []string{"/api/v1/users/throw1/app-password", "/api/v1/users/throw1/app-password%0A"} {
			if what, ok := a.routed(t, target); !ok || what != `app-password for "throw1" (`+a.name+`)` {
				t.Fatalf("Starlette routes %q to %q (%v): the oracle is not the route table", target, what, ok)
			}
		}
	}

	for _, settings := range []string{"", "prefix /"} {
		t.Run("prefix="+strings.TrimPrefix(settings, "prefix "), func(t *testing.T) {
			e := newEnv(t, settings)
			var nRouted, nPassed int
			near := map[string]bool{}
			for _, p := range reallyDifferent {
				near[p] = true
			}
			for _, target := range paths {
				what, routes := app.routed(t, target)
				status, _, body, err := rawGet(strings.TrimPrefix(e.base, "http://"), target)
				if err != nil {
					t.Fatalf("Caddy, GET %q: %v", target, err)
				}
				arrived := status == http.StatusTeapot && strings.HasPrefix(body, "backend:GET ")
				if routes {
					nRouted++
				}
				if near[target] && !arrived {
					t.Errorf("%q, a near path, did not pass through: %d %s", target, status, body)
				}
				if !arrived {
					continue
				}
				nPassed++
				if routes {
					t.Errorf("%q: Starlette routes it to %s, and Caddy passed it on as %q", target, what, strings.TrimPrefix(body, "backend:GET "))
					continue
				}
				// What the backend received is what the MCP server routes.
				if uri := strings.TrimPrefix(body, "backend:GET "); uri != target {
					if what, ok := app.routed(t, uri); ok {
						t.Errorf("%q arrived at the backend as %q, which Starlette routes to %s", target, uri, what)
					}
				}
			}
			if seen := len(e.backend.requests()); seen != nPassed {
				t.Errorf("the backend saw %d requests, the answers say %d", seen, nPassed)
			}
			t.Logf("%d paths: %d routed by Starlette, %d passed on to the backend", len(paths), nRouted, nPassed)
		})
	}
}

// differentialPaths are the seeds (the known spellings, the issue's %0A,
// the near paths) and n mutations of the routes: escapes, control
// characters, separators, dot segments, params and case changes inserted,
// mostly where routers look (the end, segment boundaries).
func differentialPaths(n int, rng *rand.Rand) []string {
	routes := []string{
		"/api/v1/users/alice/app-password",
		"/api/v1/users/alice/access",
		"/api/v1/users/alice/scopes",
		"/api/v1/scopes",
		"/api/v1/users/throw1/app-password",
	}
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] && acceptableTarget(p) {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, list := range [][]string{routes, apiSpellings, idSpellings, reallyDifferent} {
		for _, p := range list {
			add(p)
		}
	}
	for _, r := range routes {
		for _, tail := range []string{"%0A", "%0a", "%0D%0A", "%0A%0A", "%0A/", "/%0A", "%00", "%0D", "%09", "%20", "%0A?x=1"} {
			add(r + tail)
		}
	}
	tokens := []string{
		"%0A", "%0a", "%0D%0A", "%0D", "%00", "%09", "%0B", "%0C", "%1F", "%7F", "%20", "%C2%85", "%E2%80%A8",
		"/", "//", "%2F", "%2f", "%252F", ".", "..", "/.", "/..", "/./", "/../", "%2e", "%2E%2E", "/%2e%2e/",
		";", ";x", "%3B", `\`, "%5C", "%25", "%3F", "%23", "?", "~", "%7E", "%2D", "+", "%C0%AF", "%EF%BC%8F",
	}
	want := len(out) + n
	for tries := 0; len(out) < want && tries < 20*n; tries++ {
		p := routes[rng.IntN(len(routes))]
		for range 1 + rng.IntN(3) {
			p = mutate(p, tokens, rng)
		}
		add(p)
	}
	return out
}

// mutate makes one change to p: a token inserted (at the end, at a
// segment boundary, or anywhere), a byte percent-encoded, a letter's case
// flipped, or a byte dropped.
func mutate(p string, tokens []string, rng *rand.Rand) string {
	pos := func() int {
		switch rng.IntN(4) {
		case 0, 1:
			return len(p)
		case 2:
			var slashes []int
			for i := range len(p) {
				if p[i] == '/' {
					slashes = append(slashes, i)
				}
			}
			return slashes[rng.IntN(len(slashes))]
		}
		return 1 + rng.IntN(len(p))
	}
	switch rng.IntN(6) {
	case 0, 1, 2:
		i := pos()
		return p[:i] + tokens[rng.IntN(len(tokens))] + p[i:]
	case 3:
		i := 1 + rng.IntN(len(p)-1)
		hex := fmt.Sprintf("%%%02X", p[i])
		if rng.IntN(2) == 0 {
			hex = strings.ToLower(hex)
		}
		return p[:i] + hex + p[i+1:]
	case 4:
		i := rng.IntN(len(p))
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		return p[:i] + string(c) + p[i+1:]
	}
	if len(p) < 2 {
		return p
	}
	i := 1 + rng.IntN(len(p)-1)
	return p[:i] + p[i+1:]
}

// acceptableTarget keeps paths a client can write in a request line: no
// raw space or control byte, which end or break the line before any
// router sees it.
func acceptableTarget(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f {
			return false
		}
	}
	return true
}
