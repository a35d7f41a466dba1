package mcpserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/encode/gzip"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/mcpserver"
)

// probe stands in for the app_password handler in these tests: it reads
// the body (as the handler does for its own checks), delivers, and
// answers the client with the outcome as JSON.
type probe struct{}

func init() {
	caddy.RegisterModule(probe{})
	httpcaddyfile.RegisterHandlerDirective("deliver_probe", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		return probe{}, nil
	})
}

func (probe) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.deliver_probe", New: func() caddy.Module { return new(probe) }}
}

type outcome struct {
	Kind   string `json:"kind"`
	Status int    `json:"status"`
	Text   string `json:"text"`
}

func (probe) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	// As the handler will: the client going away does not cut the
	// hand-over short, a deadline does.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	o := mcpserver.Deliver(ctx, next, r, body)
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(outcome{o.Kind.String(), o.Status, o.Text})
}

const (
	adaPW   = "Zyxwv-Utsrq-Ponml-Kjihg-Fedcb"
	alicePW = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"
)

var t0 = time.Unix(1_800_000_000, 0)

type env struct {
	t    *testing.T
	nc   *fakenextcloud.Server
	mcp  *fakemcp.Server
	base string
}

// start runs Caddy in this process with site as the body of the site
// block; {mcp} in it is the double's address.
func start(t *testing.T, site string) *env {
	nc := fakenextcloud.New(t)
	nc.AddUser("alice", "", alicePW)
	nc.AddUser("ada", "ada@example.com", adaPW)
	mcp := fakemcp.New(t, nc.URL)
	mcp.SetClock(func() time.Time { return t0 })
	e := &env{t: t, nc: nc, mcp: mcp}
	e.load(site)
	return e
}

func (e *env) load(site string) {
	t := e.t
	port := freePort(t)
	e.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	order deliver_probe before basic_auth
	log {
		output discard
	}
}

http://127.0.0.1:%d {
	%s
}
`, port, strings.ReplaceAll(site, "{mcp}", e.mcp.Listener.Addr().String()))
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v\n%s", err, caddyfile)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// send makes one client request through Caddy and returns the outcome
// the probe reports. A nil body reader sends none; chunked sends body
// without a length.
func (e *env) send(method, path, auth string, body string, chunked bool, header ...string) (outcome, http.Header) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd)
		}
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var o outcome
	if resp.StatusCode != 200 || json.Unmarshal(raw, &o) != nil {
		e.t.Fatalf("probe answered %d %s", resp.StatusCode, raw)
	}
	return o, resp.Header
}

func (o outcome) is(t *testing.T, kind string, status int, text string) {
	t.Helper()
	if o != (outcome{kind, status, text}) {
		t.Fatalf("outcome %+v, want {%s %d %s}", o, kind, status, text)
	}
}

const site = `deliver_probe
	reverse_proxy {mcp}`

func TestDeliverProvisionDeleteScopesThroughReverseProxy(t *testing.T) {
	e := start(t, site)
	const path = "/api/v1/users/ada/app-password"
	auth := basic("ada", adaPW)
	body := `{"username": "ada@example.com"}`

	o, _ := e.send("POST", path, auth, body, false)
	o.is(t, "accepted", 200, "App password stored for ada")
	rec, ok := e.mcp.Get("ada")
	if !ok || rec.Password != adaPW || rec.Username != "ada@example.com" || rec.Scopes != nil {
		t.Fatalf("double holds %+v", rec)
	}
	got := e.mcp.Requests()[0]
	if got.Method != "POST" || got.Path != path || got.Header.Get("Authorization") != auth || string(got.Body) != body ||
		got.Header.Get("Content-Type") != "application/json" || got.Header.Get("Content-Length") != strconv.Itoa(len(body)) ||
		got.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Fatalf("the double received %+v", got)
	}

	o, _ = e.send("PATCH", "/api/v1/users/ada/scopes", auth, `{"scopes":["notes.read","files.write"],"username":"ada@example.com"}`, false)
	o.is(t, "accepted", 200, "Scopes updated successfully")
	if rec, _ := e.mcp.Get("ada"); strings.Join(rec.Scopes, ",") != "notes.read,files.write" {
		t.Fatalf("scopes %v", rec.Scopes)
	}

	o, _ = e.send("DELETE", path, auth, body, false)
	o.is(t, "accepted", 200, "App password deleted for ada")
	if e.mcp.Len() != 0 {
		t.Fatal("the double kept the row")
	}
}

func TestDeliverToADownServerIsUnreachable(t *testing.T) {
	e := start(t, site)
	e.mcp.Close()
	o, _ := e.send("POST", "/api/v1/users/alice/app-password", basic("alice", alicePW), "", false)
	if o.Kind != "unreachable" || o.Status != 502 || !strings.Contains(o.Text, "connection refused") || strings.Contains(o.Text, "id=") {
		t.Fatalf("outcome %+v", o)
	}
}

// The sixth provision in an hour: the MCP server's own limit refuses it,
// and its text comes back for the log — not to the client.
func TestDeliverRefusedByTheServersLimit(t *testing.T) {
	e := start(t, site)
	auth := basic("alice", alicePW)
	for range fakemcp.Limit {
		o, _ := e.send("POST", "/api/v1/users/alice/app-password", auth, "", false)
		o.is(t, "accepted", 200, "App password stored for alice")
	}
	o, header := e.send("POST", "/api/v1/users/alice/app-password", auth, "", false)
	o.is(t, "refused", 429, "Rate limit exceeded. Try again in 3600 seconds.")
	if header.Get("Retry-After") != "" {
		t.Fatal("the MCP server's answer reached the client")
	}
}

// Nextcloud no longer accepts the password: the MCP server keeps its
// copy and says 401, which the handler reports as such.
func TestDeliverDeleteOfARevokedPassword(t *testing.T) {
	e := start(t, site)
	auth := basic("alice", alicePW)
	o, _ := e.send("POST", "/api/v1/users/alice/app-password", auth, "", false)
	o.is(t, "accepted", 200, "App password stored for alice")
	e.nc.AddUser("alice", "", "Other-Other-Other-Other-Other")
	o, _ = e.send("DELETE", "/api/v1/users/alice/app-password", auth, "", false)
	o.is(t, "refused", 401, "Invalid credentials")
	if _, ok := e.mcp.Get("alice"); !ok {
		t.Fatal("row gone")
	}
}

// A body longer than any one read (reverse_proxy copies 32 KiB at a time,
// the server reads 4 KiB) arrives byte for byte, with its length, although
// the client sent it chunked.
func TestDeliverLargeBodyIntact(t *testing.T) {
	e := start(t, site)
	body := `{"username":` + strings.Repeat(" \t\r\n", 10<<10) + `"ada@example.com", "scopes": ["notes.read"]}`
	o, _ := e.send("POST", "/api/v1/users/ada/app-password", basic("ada", adaPW), body, true)
	o.is(t, "accepted", 200, "App password stored for ada")
	got := e.mcp.Requests()[0]
	if string(got.Body) != body {
		t.Fatalf("body: %d bytes arrived of %d", len(got.Body), len(body))
	}
	if got.Chunked || got.ContentLength != int64(len(body)) || got.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("chunked %v, length %d %q; want %d", got.Chunked, got.ContentLength, got.Header.Get("Content-Length"), len(body))
	}
	if rec, _ := e.mcp.Get("ada"); rec.Username != "ada@example.com" || strings.Join(rec.Scopes, ",") != "notes.read" {
		t.Fatalf("double holds %+v", rec)
	}
}

// What other handlers between the probe and reverse_proxy do to a
// delivery.
func TestDeliverThroughOtherHandlers(t *testing.T) {
	auth := basic("alice", alicePW)
	const path = "/api/v1/users/alice/app-password"
	t.Run("request_header changes the delivery as any request", func(t *testing.T) {
		e := start(t, `deliver_probe
	request_header X-Via "caddy"
	reverse_proxy {mcp}`)
		o, _ := e.send("POST", path, auth, "", false)
		o.is(t, "accepted", 200, "App password stored for alice")
		if v := e.mcp.Requests()[0].Header.Get("X-Via"); v != "caddy" {
			t.Fatalf("X-Via %q", v)
		}
	})
	t.Run("encode does not compress the answer the probe reads", func(t *testing.T) {
		e := start(t, `deliver_probe
	encode {
		gzip
		minimum_length 1
	}
	reverse_proxy {mcp}`)
		o, _ := e.send("POST", path, auth, "", false, "Accept-Encoding", "gzip")
		o.is(t, "accepted", 200, "App password stored for alice")
	})
	t.Run("respond answers instead of the MCP server", func(t *testing.T) {
		e := start(t, `deliver_probe
	respond "OK" 200`)
		o, _ := e.send("POST", path, auth, "", false)
		o.is(t, "refused", 200, `answer without "success": true`)
	})
	t.Run("respond with the MCP server's words passes for it", func(t *testing.T) {
		// Caddy marks a body that looks like JSON as application/json:
		// what a handler between writes is taken as written.
		e := start(t, `deliver_probe
	respond `+"`"+`{"success": true}`+"`"+` 200`)
		o, _ := e.send("POST", path, auth, "", false)
		o.is(t, "accepted", 200, "")
	})
	t.Run("abort", func(t *testing.T) {
		e := start(t, `deliver_probe
	abort`)
		o, _ := e.send("POST", path, auth, "", false)
		o.is(t, "unreachable", 0, "the answer was aborted")
	})
	t.Run("nothing after the handler", func(t *testing.T) {
		e := start(t, `deliver_probe`)
		o, _ := e.send("POST", path, auth, "", false)
		o.is(t, "unreachable", 0, "no handler answered")
	})
	t.Run("error directive", func(t *testing.T) {
		e := start(t, `deliver_probe
	error "blocked" 403`)
		o, _ := e.send("POST", path, auth, "", false)
		o.is(t, "unreachable", 403, "blocked")
	})
}
