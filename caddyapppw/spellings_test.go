package caddyapppw

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawCall sends one request with target written on the wire byte for
// byte: net/http's client would re-escape some spellings (a "\" becomes
// "%5C") and so never send them.
func (e *env) rawCall(method, target, auth, body string) answer {
	e.t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.base, "http://"), 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nAccept: application/json\r\n", method, target, strings.TrimPrefix(e.base, "http://"))
	if auth != "" {
		fmt.Fprintf(&b, "Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(auth)))
	}
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(data)}
}

const invalidPathBody = `{"success":false,"error":"Invalid path"}`

// apiSpellings are spellings of the API's routes that some router, framework
// or proxy in front of (or inside) the MCP server maps onto one of them. The
// first nine reached the backend through the built binary.
var apiSpellings = []string{
	"/api/v1/users/alice/app-password/",
	"/api/v1/users/alice/app-password%2F",
	"/api/v1/users/alice/app-password;x",
	"/api/v1/./users/alice/app-password",
	"/api/v1//users/alice/app-password",
	"/api//v1/users/alice/app-password",
	"/api/v1/scopes/",
	"/api/v1/users/alice/access/",
	"/api/v1/users/alice/scopes/",
	// dot segments, plain and encoded, resolved by nginx, Go's path.Clean,
	// WHATWG URL parsers (which treat %2e as a dot)
	"/api/v1/x/../users/alice/app-password",
	"/api/v1/x/%2e%2e/users/alice/app-password",
	"/api/v1/x/%2E%2E/scopes",
	"/api/v1/%2e/scopes",
	"/api/v1/users/alice/app-password/.",
	"/api/v1/users/alice/app-password/x/..",
	"/x/../api/v1/scopes",
	"/api/v1/scopes/..;x/..",
	// RFC 3986 and WHATWG count empty segments when resolving: the ".."
	// takes the empty one
	"/api/v1//../scopes",
	"/api/v1//%2E%2E/scopes",
	"/api/v1/users/alice/app-password//..",
	// ;params on any segment, dropped by Tomcat, Jetty, Spring
	"/api;x/v1/users/alice/app-password",
	"/api/v1;x/scopes",
	"/api/v1/users;x/alice/access",
	"/api/v1/scopes;jsessionid=1",
	"/api/v1/users/alice/app-password;%2Fx",
	"/api/v1/x/..;/scopes",
	// encoded slashes, decoded by uvicorn before routing
	"/api%2Fv1/scopes",
	"/api/v1/users%2Falice%2Fapp-password",
	"/api/v1%2F%2Fscopes",
	// backslashes, slashes to WHATWG URL parsers and IIS
	`/api\v1\scopes`,
	`/api/v1/users/alice\app-password`,
	"/api/v1/users/alice%5Caccess",
	// slashes merged anywhere, the leading ones too
	"//api/v1/scopes",
	"/api/v1/scopes//",
	// the API's words in another case, for case-insensitive routers
	"/API/v1/scopes",
	"/api/V1/users/alice/App-Password",
	"/api/v1/users/alice/ACCESS",
	// decoded twice by a chain of two decoders
	"/api/v1/scopes%252F",
	"/api/v1/%252e%252e/v1/scopes",
	// an encoded ? that a decoding proxy forwards as the query
	"/api/v1/scopes%3Fx",
	"/api/v1/users/alice/access%23x",
	// a final newline, which Starlette's "$" (Python's re.match) matches
	// before, decoded by uvicorn; and control characters, NUL included,
	// that some router or proxy strips or trims
	"/api/v1/users/alice/app-password%0A",
	"/api/v1/users/alice/app-password%0D%0A",
	"/api/v1/scopes%0A",
	"/api/v1/users/alice/access%0a",
	"/api/v1/users/alice/scopes%0A",
	"/api/v1/users/alice/app-password%00",
	"/api/v1/users/alice/app-password%09",
	"/api/v1/users/alice/app-password%0D",
	"/api/v1/users/alice/app-password%7F",
	"/api/v1/scopes%1F",
	"/api/v1/sco%00pes",
	"/api/v1/users/alice/app-%0Apassword",
	"/api/v1%0A/scopes",
	"/api/v1/users/alice/app-password%0A/",
	"/api/v1/users/alice/app-password%250A",
	// an encoded "?" or "#" inside the id, with a %2F that only a whole
	// decoding resolves: uvicorn decodes the path after the query is split
	// off, so Starlette routes the id "al?ice" (found by
	// TestStarletteDifferential)
	"/api%2Fv1/users/al%3Fic%65/app-password",
	"/api%2Fv1/users/al%3Fice/app-password",
	"/api/v1/users%2Fal%23ice/access",
}

// idSpellings put more than one segment between "users/" and the action:
// all of it is the user id, which is then invalid.
var idSpellings = []string{
	"/api/v1/users/alice//app-password",
	"/api/v1/users/x/../alice/app-password",
	"/api/v1/users/./alice/access",
	"/api/v1/users/alice/.//access",
	"/api/v1/users/alice%2F/access",
	"/api/v1/users/%2e%2e/access",
	// the id itself holding a newline or NUL: Starlette's {user_id}
	// takes any character but "/"
	"/api/v1/users/alice%0A/app-password",
	"/api/v1/users/ali%00ce/access",
}

// reallyDifferent are paths no router maps onto an API route: they are the
// backend's, untouched.
var reallyDifferent = []string{
	"/api/v1/users/alice/app-password/extra",
	"/api/v1/users/alice/app-passwords",
	"/api/v2/users/alice/app-password",
	"/api/v2/scopes",
	"/api/v1/scopesx",
	"/api/v1/users/alice",
	"/api/v1/users/alice/app-password/..",
	"/api/v1/users/alice/app-password/extra/",
	"/api/v1x/scopes",
	"/mcp",
	"/messages/?session_id=abc",
	"/sse/",
	"/api/v1/users/alice/app-password%0Aextra",
	"/api/v2/users/alice/app-password%0A",
}

// TestRouteSpellingsNeverReachBackend drives each spelling through Caddy
// from a Caddyfile: the module answers it with its own JSON, and neither
// the backend, Nextcloud nor Vault see anything.
func TestRouteSpellingsNeverReachBackend(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	for _, target := range apiSpellings {
		for _, method := range []string{"GET", "POST", "DELETE", "PATCH"} {
			a := e.rawCall(method, target, "alice:"+alicePW, `{"scopes":["notes.read"]}`)
			if a.status != http.StatusBadRequest || a.body != invalidPathBody {
				t.Errorf("%s %s: got %d %s, want 400 %s", method, target, a.status, a.body, invalidPathBody)
			}
		}
	}
	for _, target := range idSpellings {
		e.rawCall("GET", target, "alice:"+alicePW, "").expect(t, 400, `{"success":false,"error":"Invalid user_id"}`)
	}
	if seen := e.backend.requests(); len(seen) != 0 {
		for _, s := range seen {
			t.Errorf("backend received %s %s", s.method, s.uri)
		}
	}
	if n := e.nc.Calls(); n != 0 {
		t.Errorf("Nextcloud asked %d times", n)
	}
	if rec := e.stored("alice"); rec != nil {
		t.Errorf("Vault holds %v", rec)
	}
	for _, l := range e.logLines() {
		if l["msg"] == "app password request" && l["outcome"] != "invalid_user_id" && (l["route"] != "invalid-path" || l["outcome"] != "invalid_path" || l["user_id"] != "") {
			t.Errorf("log line %v", l)
		}
	}
}

// TestRouteExactSpellingServed: the exact spelling, and one that only
// percent-encodes characters of a segment, are the routes themselves.
func TestRouteExactSpellingServed(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	e.rawCall("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").
		expect(t, 200, `{"success":true,"user_id":"alice","has_app_password":false}`)
	e.rawCall("GET", "/api/v1/users/%61lice/app%2Dpassword", "alice:"+alicePW, "").
		expect(t, 200, `{"success":true,"user_id":"alice","has_app_password":false}`)
	// Everything between users/ and the action is the user id.
	e.rawCall("GET", "/api/v1/users/a/../alice/access", "alice:"+alicePW, "").
		expect(t, 400, `{"success":false,"error":"Invalid user_id"}`)
	if seen := e.backend.requests(); len(seen) != 0 {
		t.Errorf("backend received %v", seen)
	}
}

// TestRouteReallyDifferentPassThrough: paths that are not the API under
// any reading reach the backend exactly as sent.
func TestRouteReallyDifferentPassThrough(t *testing.T) {
	e := newEnv(t, "")
	for _, target := range reallyDifferent {
		a := e.rawCall("GET", target, "alice:"+alicePW, "")
		if a.status != http.StatusTeapot || a.body != "backend:GET "+target {
			t.Errorf("GET %s: got %d %s", target, a.status, a.body)
		}
	}
	if n := len(e.backend.requests()); n != len(reallyDifferent) {
		t.Errorf("backend saw %d requests, want %d", n, len(reallyDifferent))
	}
}

// TestPrefixRoot: with "prefix /" the routes are /scopes and
// /users/<id>/<action>, their other spellings are refused, and so are the
// MCP server's own routes at /api/v1, in every spelling.
func TestPrefixRoot(t *testing.T) {
	e := newEnv(t, "prefix /")
	e.nc.AddUser("alice", "", alicePW)
	list, _ := json.Marshal(newTestScopes(t))
	e.rawCall("GET", "/scopes", "", "").expect(t, 200, `{"success":true,"scopes":`+string(list)+`}`)
	e.rawCall("GET", "/users/alice/app-password", "alice:"+alicePW, "").
		expect(t, 200, `{"success":true,"user_id":"alice","has_app_password":false}`)
	e.rawCall("GET", "/users/a%2Fb/access", "alice:"+alicePW, "").
		expect(t, 400, `{"success":false,"error":"Invalid user_id"}`)
	for _, target := range []string{"/scopes/", "//scopes", "/x/../scopes", "/SCOPES", "/users/alice/app-password;x", "/%2e/users/alice/access",
		// the MCP server's own copy, which "prefix /" must not open
		"/api/v1/scopes", "/api/v1/users/alice/app-password", "/api/v1//users/alice/access"} {
		e.rawCall("GET", target, "alice:"+alicePW, "").expect(t, 400, invalidPathBody)
	}
	if seen := e.backend.requests(); len(seen) != 0 {
		t.Fatalf("backend received %v", seen)
	}
	for _, target := range []string{"/api/v2/scopes", "/mcp", "/users/alice", "/scopesx"} {
		if a := e.rawCall("GET", target, "", ""); a.status != http.StatusTeapot || a.body != "backend:GET "+target {
			t.Errorf("GET %s: got %d %s", target, a.status, a.body)
		}
	}
}

// TestPrefixTrailingSlash: "/api/v1/" is the prefix "/api/v1".
func TestPrefixTrailingSlash(t *testing.T) {
	e := newEnv(t, "prefix /mcp/api/")
	list, _ := json.Marshal(newTestScopes(t))
	e.rawCall("GET", "/mcp/api/scopes", "", "").expect(t, 200, `{"success":true,"scopes":`+string(list)+`}`)
	e.rawCall("GET", "/mcp/api//scopes", "", "").expect(t, 400, invalidPathBody)
	if seen := e.backend.requests(); len(seen) != 0 {
		t.Fatalf("backend received %v", seen)
	}
}

// TestPrefixRefusedAtProvisioning: a prefix that is not a plain path has
// no one spelling to serve; Caddy refuses to load it, saying why.
func TestPrefixRefusedAtProvisioning(t *testing.T) {
	site := func(prefix string) string {
		return "{\n\tadmin off\n}\nhttp://127.0.0.1:0 {\n\tapp_password {\n\t\tnextcloud http://127.0.0.1:1\n\t\tvault http://127.0.0.1:1\n\t\tprefix " + prefix + "\n\t}\n}\n"
	}
	const plain = "is not a plain path: segments of letters, digits and - . _ ~ between single slashes"
	for prefix, want := range map[string]string{
		"api/v1":    `prefix: "api/v1" must start with /`,
		"/api//v1":  `prefix: "/api//v1" ` + plain,
		"/api/./v1": `prefix: "/api/./v1" ` + plain,
		"/api/../x": `prefix: "/api/../x" ` + plain,
		"/api/v%31": `prefix: "/api/v%31" ` + plain,
		"/api;x/v1": `prefix: "/api;x/v1" ` + plain,
		`/api\v1`:   `prefix: "/api\\v1" ` + plain,
		"//":        `prefix: "//" ` + plain,
		"/api/v1//": `prefix: "/api/v1//" ` + plain,
	} {
		err := validate(t, site(prefix))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("prefix %s: error %v, want it to say %s", prefix, err, want)
		}
	}
	for _, prefix := range []string{"/", "/api/v1", "/api/v1/", "/mcp/API/v1.0~x_y-z"} {
		if err := validate(t, site(prefix)); err != nil {
			t.Errorf("prefix %s refused: %v", prefix, err)
		}
	}
}

// TestNewlineSpellingIsNoDoor is the report: POST
// .../app-password%0A with a throwaway id and a login name in the body went
// straight to the MCP server's own copy of the route (uvicorn decodes %0A,
// Starlette's "$" matches before a final newline), one unlimited guess per
// throwaway id. The module answers it 400 Invalid path, and neither the
// backend nor Nextcloud sees it.
func TestNewlineSpellingIsNoDoor(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("carol", "carol@example.com", alicePW)
	for i, suffix := range []string{"%0A", "%0D%0A", "%0a", "%00"} {
		target := fmt.Sprintf("/api/v1/users/throw%d/app-password%s", i, suffix)
		e.rawCall("POST", target, fmt.Sprintf("throw%d:guess-guess-guess-guess-%d", i, i), `{"username":"carol@example.com"}`).
			expect(t, 400, invalidPathBody)
	}
	if seen := e.backend.requests(); len(seen) != 0 {
		t.Errorf("backend received %v", seen)
	}
	if n := e.nc.Calls(); n != 0 {
		t.Errorf("Nextcloud asked %d times", n)
	}
}
