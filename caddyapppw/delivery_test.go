package caddyapppw

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
	"github.com/caddy-apppw/caddy-apppw/internal/mcpserver"
)

// These tests run a real Caddy from a Caddyfile with deliver_to_mcp and a
// reverse_proxy to the MCP server's double (internal/fakemcp), which
// checks passwords against the same fake Nextcloud as the module, limits
// on its own and keeps its own table.

// mcpUpstream is the MCP server's double, listening on an address that
// stays the same when the test takes it down and brings it back.
type mcpUpstream struct {
	*fakemcp.Handler
	t    *testing.T
	addr string
	mu   sync.Mutex
	srv  *http.Server
	// held, when set (hold), makes each request wait for release after
	// saying on arrived that it came.
	held             bool
	arrived, release chan struct{}
	// failing, when not 0, is the status every request is answered
	// with, as a proxy in front of a failing MCP server answers.
	failing int
}

// failWith makes the MCP server answer every request with status (0:
// serve again).
func (u *mcpUpstream) failWith(status int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.failing = status
}

// hold makes the MCP server take each request and then wait, until the
// test closes u.release (or the request's context ends).
func (u *mcpUpstream) hold() {
	u.held, u.arrived, u.release = true, make(chan struct{}, 16), make(chan struct{})
}

func (u *mcpUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	failing := u.failing
	u.mu.Unlock()
	if failing != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(failing)
		_, _ = io.WriteString(w, `{"detail":"upstream failing"}`)
		return
	}
	if u.held {
		u.arrived <- struct{}{}
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
	}
	u.Handler.ServeHTTP(w, r)
}

func newMCPUpstream(t *testing.T, nextcloudURL string) *mcpUpstream {
	u := &mcpUpstream{Handler: fakemcp.NewHandler(nextcloudURL), t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	u.serve(ln)
	t.Cleanup(u.down)
	return u
}

func (u *mcpUpstream) serve(ln net.Listener) {
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	u.mu.Lock()
	u.srv = srv
	u.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			u.t.Error(err)
		}
	}()
}

// down closes the listener and every connection: the MCP server is gone,
// and a new connection is refused.
func (u *mcpUpstream) down() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv != nil {
		_ = u.srv.Close()
		u.srv = nil
	}
}

// up serves again on the same address, with the same table and limiter.
func (u *mcpUpstream) up() {
	ln, err := net.Listen("tcp", u.addr)
	if err != nil {
		u.t.Fatal(err)
	}
	u.serve(ln)
}

// newDeliveryEnv is newEnv with deliver_to_mcp on and the double as the
// reverse_proxy's upstream, on the test's clock.
func newDeliveryEnv(t *testing.T, settings string) (*env, *mcpUpstream) {
	t.Helper()
	e := newEnv(t, settings)
	mcp := newMCPUpstream(t, e.nc.URL)
	mcp.SetClock(e.clock.Now)
	// The harness proxies to its recording backend; these tests proxy to
	// the double instead, which records too.
	e.backend.URL = mcp.addr
	e.load(e.caddyfile("deliver_to_mcp http://" + mcp.addr + "\n" + settings))
	return e, mcp
}

// deliveryLines are the module's log lines about deliveries.
func (e *env) deliveryLines() []map[string]any {
	var out []map[string]any
	for _, l := range e.logLines() {
		if _, ok := l["mcp_outcome"]; ok {
			out = append(out, l)
		}
	}
	return out
}

// lastDelivery is the newest delivery line; it fails the test if there is
// none.
func (e *env) lastDelivery() map[string]any {
	e.t.Helper()
	lines := e.deliveryLines()
	if len(lines) == 0 {
		e.t.Fatal("no delivery was logged")
	}
	return lines[len(lines)-1]
}

// expectDelivery checks a delivery line's message, level and outcome.
func expectDelivery(t *testing.T, line map[string]any, level, msg, outcome string, status int, text string) {
	t.Helper()
	if line["level"] != level || line["msg"] != msg || line["mcp_outcome"] != outcome ||
		line["mcp_status"] != float64(status) || line["mcp_text"] != text {
		t.Fatalf("delivery logged %v\nwant level %s, msg %q, outcome %s, status %d, text %q", line, level, msg, outcome, status, text)
	}
}

const (
	msgDelivered   = "delivered to the MCP server"
	msgNotAccepted = "the MCP server did not accept the change"
	msgKeptItsCopy = "the MCP server kept its copy: it refused the deletion with 401 because Nextcloud " +
		"did not accept the password; it drops the password at its own next check against Nextcloud"
	notAccepted = `{"success":false,"error":"MCP server did not accept the change"}`
)

func basicAuthHeader(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// Astrolabe provisions, an operator narrows the scopes, Astrolabe
// revokes: each change lands in Vault and in the MCP server's table, and
// the MCP server received the client's request as sent.
func TestDeliveryProvisionScopesDelete(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "")
	e.nc.AddUser("alice", "alice@example.com", alicePW)
	before := e.scrape()
	const path = "/api/v1/users/alice/app-password"
	provision := `{"username": "alice@example.com"}`

	e.call("POST", path, "alice:"+alicePW, provision).
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	if got := e.stored("alice"); got["app_password"] != alicePW || got["username"] != "alice@example.com" {
		t.Fatalf("Vault holds %v", got)
	}
	row, ok := mcp.Get("alice")
	if !ok || row.Password != alicePW || row.Username != "alice@example.com" || row.Scopes != nil {
		t.Fatalf("the MCP server holds %+v (%v)", row, ok)
	}
	reqs := mcp.Requests()
	if len(reqs) != 1 {
		t.Fatalf("the MCP server received %d requests", len(reqs))
	}
	got := reqs[0]
	if got.Method != "POST" || got.Path != path || got.RawQuery != "" || string(got.Body) != provision ||
		got.ContentLength != int64(len(provision)) || got.Chunked ||
		got.Header.Get("Authorization") != basicAuthHeader("alice", alicePW) ||
		got.Header.Get("Content-Type") != "application/json" || got.Header.Get("Accept") != "application/json" {
		t.Fatalf("the MCP server received %+v", got)
	}
	expectDelivery(t, e.lastDelivery(), "info", msgDelivered, "accepted", 200, "App password stored for alice")

	scopes := `{"scopes": ["notes.read", "files.write"], "username": "alice@example.com"}`
	e.call("PATCH", "/api/v1/users/alice/scopes", "alice:"+alicePW, scopes).
		expect(t, 200, `{"success":true,"message":"Scopes updated successfully","scopes":["notes.read","files.write"]}`)
	if got := e.stored("alice")["scopes"]; !equalAny(got, []any{"notes.read", "files.write"}) {
		t.Fatalf("Vault holds scopes %v", got)
	}
	if row, _ := mcp.Get("alice"); strings.Join(row.Scopes, ",") != "notes.read,files.write" {
		t.Fatalf("the MCP server holds scopes %v", row.Scopes)
	}
	if got := mcp.Requests()[1]; got.Method != "PATCH" || got.Path != "/api/v1/users/alice/scopes" || string(got.Body) != scopes {
		t.Fatalf("the MCP server received %+v", got)
	}
	expectDelivery(t, e.lastDelivery(), "info", msgDelivered, "accepted", 200, "Scopes updated successfully")

	// The login name in the body is what lets the MCP server check the
	// password for a user who logs in with another name than the uid.
	e.call("DELETE", path, "alice:"+alicePW, provision).
		expect(t, 200, `{"success":true,"message":"App password deleted for alice"}`)
	if got := e.stored("alice"); got != nil {
		t.Fatalf("Vault still holds %v", got)
	}
	if _, ok := mcp.Get("alice"); ok || mcp.Len() != 0 {
		t.Fatal("the MCP server kept the row")
	}
	if got := mcp.Requests()[2]; got.Method != "DELETE" || string(got.Body) != provision {
		t.Fatalf("the MCP server received %+v", got)
	}
	expectDelivery(t, e.lastDelivery(), "info", msgDelivered, "accepted", 200, "App password deleted for alice")

	after := e.scrape()
	for _, c := range []struct {
		route string
		delta float64
	}{{"app-password", 2}, {"user-scopes", 1}} {
		labels := []string{`route="` + c.route + `"`, `outcome="accepted"`}
		if d := metricValue(t, after, "caddy_app_password_deliveries_total", labels...) -
			metricValue(t, before, "caddy_app_password_deliveries_total", labels...); d != c.delta {
			t.Errorf("deliveries_total%v moved by %v, want %v", labels, d, c.delta)
		}
	}
	assertNoSecretLogged(t, e, alicePW)
}

func equalAny(got any, want []any) bool {
	list, ok := got.([]any)
	if !ok || len(list) != len(want) {
		return false
	}
	for i := range list {
		if list[i] != want[i] {
			return false
		}
	}
	return true
}

// assertNoSecretLogged: no password, and no Authorization value in any
// spelling, in the whole log.
func assertNoSecretLogged(t *testing.T, e *env, passwords ...string) {
	t.Helper()
	data, err := os.ReadFile(e.logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range passwords {
		for _, secret := range []string{pw, base64.StdEncoding.EncodeToString([]byte("alice:" + pw))} {
			if bytes.Contains(data, []byte(secret)) {
				t.Fatalf("the log holds %q", secret)
			}
		}
	}
}

// The MCP server is down: the client gets 502, Vault keeps the record,
// and the attempt is given back, so a retry is not refused by the limit
// (here one attempt an hour) and succeeds once the MCP server is back.
func TestDeliveryToADownMCPServer(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "rate_limit 1 1h")
	e.nc.AddUser("alice", "alice@example.com", alicePW)
	const path = "/api/v1/users/alice/app-password"
	body := `{"username": "alice@example.com"}`
	before := e.scrape()
	mcp.down()

	for range 2 {
		e.call("POST", path, "alice:"+alicePW, body).expect(t, 502, notAccepted)
		if got := e.stored("alice"); got["app_password"] != alicePW || got["username"] != "alice@example.com" {
			t.Fatalf("Vault holds %v", got)
		}
		line := e.lastDelivery()
		if line["level"] != "warn" || line["msg"] != msgNotAccepted || line["mcp_outcome"] != "unreachable" ||
			line["mcp_status"] != float64(502) || !strings.Contains(line["mcp_text"].(string), "connection refused") {
			t.Fatalf("delivery logged %v", line)
		}
	}
	if !e.causeLogged("MCP server: unreachable, status 502: ") {
		t.Fatal("the request's error line names no cause")
	}
	if d := metricValue(t, e.scrape(), "caddy_app_password_deliveries_total", `route="app-password"`, `outcome="unreachable"`) -
		metricValue(t, before, "caddy_app_password_deliveries_total", `route="app-password"`, `outcome="unreachable"`); d != 2 {
		t.Fatalf("deliveries_total{unreachable} moved by %v, want 2", d)
	}

	// Back: the retry is idempotent and lands in both.
	mcp.up()
	e.call("POST", path, "alice:"+alicePW, body).
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	if row, ok := mcp.Get("alice"); !ok || row.Password != alicePW || row.Username != "alice@example.com" {
		t.Fatalf("the MCP server holds %+v", row)
	}
	if v := e.readableVersions("alice"); len(v) != 1 {
		t.Fatalf("readable versions %v", v)
	}
	// That one counted: the limit of one is used up now.
	e.call("POST", path, "alice:"+alicePW, body).
		expect(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`)
	assertNoSecretLogged(t, e, alicePW)
}

// The module lets 10 an hour through (and warned about it at start); the
// MCP server takes 5. The sixth is in Vault but refused by the MCP
// server's limit: 502, with the MCP server's text in the log and nothing
// of its answer sent to the client.
func TestDeliveryRefusedByTheMCPServersLimit(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "rate_limit 10 1h")
	e.nc.AddUser("alice", "", alicePW)
	const path = "/api/v1/users/alice/app-password"
	for range fakemcp.Limit {
		e.call("POST", path, "alice:"+alicePW, "").
			expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	}
	e.clock.Advance(time.Minute)
	a := e.call("POST", path, "alice:"+alicePW, `{"scopes": ["notes.read"]}`)
	a.expect(t, 502, notAccepted)
	if a.header.Get("Retry-After") != "" {
		t.Fatal("the MCP server's Retry-After reached the client")
	}
	expectDelivery(t, e.lastDelivery(), "warn", msgNotAccepted, "refused", 429, "Rate limit exceeded. Try again in 3540 seconds.")
	if got := e.stored("alice"); !equalAny(got["scopes"], []any{"notes.read"}) {
		t.Fatalf("Vault holds %v", got)
	}
	if row, _ := mcp.Get("alice"); row.Scopes != nil {
		t.Fatalf("the MCP server holds scopes %v", row.Scopes)
	}
	if d := metricValue(t, e.scrape(), "caddy_app_password_deliveries_total", `route="app-password"`, `outcome="refused"`); d < 1 {
		t.Fatal("deliveries_total{refused} did not move")
	}
}

// With delivery on, a rate_limit that lets more provisions through in an
// hour than the MCP server's 5 is warned about at provisioning; the
// default, and any limit without delivery, is not.
func TestDeliveryWarnsAboutALimitAboveTheMCPServers(t *testing.T) {
	warning := mcpserver.LimitWarning(3, 30*time.Minute)
	if warning == "" {
		t.Fatal("3 per 30m lets 6 an hour through: LimitWarning must warn")
	}
	count := func(e *env) int {
		n := 0
		for _, l := range e.logLines() {
			if l["msg"] == warning {
				if l["level"] != "warn" {
					t.Fatalf("logged at %v", l["level"])
				}
				n++
			}
		}
		return n
	}
	// newDeliveryEnv loads the settings without delivery first, then with.
	e, _ := newDeliveryEnv(t, "rate_limit 3 30m")
	if n := count(e); n != 1 {
		t.Fatalf("the warning was logged %d times, want once (with delivery only)", n)
	}
	e, _ = newDeliveryEnv(t, "rate_limit 5 1h")
	for _, l := range e.logLines() {
		if strings.Contains(l["msg"].(string), "the MCP server accepts") {
			t.Fatalf("5 per hour warned: %v", l)
		}
	}
}

// A body bigger than any one read buffer on the way (Go's and Caddy's are
// a few KiB), sent chunked: the MCP server receives the same bytes with
// their length.
func TestDeliveryCarriesALargeBodyIntact(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "")
	e.nc.AddUser("alice", "alice@example.com", alicePW)
	body := `{"username": "alice@example.com",` + strings.Repeat(" \t\r\n", 10<<10) + `"scopes": ["notes.read"]}`
	req, err := http.NewRequest("POST", e.base+"/api/v1/users/alice/app-password", io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", alicePW)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(answer) != `{"success":true,"message":"App password stored for alice","scopes":["notes.read"]}` {
		t.Fatalf("POST: %d %s", resp.StatusCode, answer)
	}
	got := mcp.Requests()[0]
	if !bytes.Equal(got.Body, []byte(body)) || got.ContentLength != int64(len(body)) || got.Chunked {
		t.Fatalf("the MCP server received %d bytes (equal: %v), Content-Length %d, chunked %v; sent %d",
			len(got.Body), bytes.Equal(got.Body, []byte(body)), got.ContentLength, got.Chunked, len(body))
	}
	if row, _ := mcp.Get("alice"); strings.Join(row.Scopes, ",") != "notes.read" {
		t.Fatalf("the MCP server holds %+v", row)
	}
}

// A request that fails any of the module's checks never reaches the MCP
// server, and neither do the reads.
func TestDeliveryNeverForAFailedCheck(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "rate_limit 3 1h\npassword_format strict")
	e.nc.AddUser("alice", "", alicePW)
	e.nc.AddUser("bob", "", alicePW)
	const path = "/api/v1/users/alice/app-password"
	for _, c := range []struct {
		method, path, auth, body string
		status                   int
		answer                   string
	}{
		{"POST", path, "", "", 401, `{"success":false,"error":"Missing BasicAuth credentials"}`},
		{"POST", path, "bob:" + alicePW, "", 403, `{"success":false,"error":"Username does not match path user_id"}`},
		{"POST", "/api/v1/users/a%2Fb/app-password", "a/b:" + alicePW, "", 400, `{"success":false,"error":"Invalid user_id"}`},
		{"POST", path, "alice:" + adminToken, "", 400, `{"success":false,"error":"Invalid app password format"}`},
		{"POST", path, "alice:" + alicePW, `{"username": `, 400, `{"success":false,"error":"Invalid JSON body"}`},
		{"POST", path, "alice:" + alicePW, `{"scopes": ["root"]}`, 400, ""},
		{"POST", path, "alice:" + alicePW, `{"` + strings.Repeat("x", 70<<10) + `": 1}`, 413, `{"success":false,"error":"Request body too large"}`},
		{"DELETE", path, "alice:" + alicePW, `"` + strings.Repeat("x", 70<<10) + `"`, 413, `{"success":false,"error":"Request body too large"}`},
		{"PATCH", "/api/v1/users/alice/scopes", "alice:" + alicePW, `{"scopes": ["notes.read"]}`, 404, `{"success":false,"error":"No app password provisioned for this user"}`},
		{"PATCH", "/api/v1/users/alice/scopes", "alice:" + alicePW, `{}`, 400, `{"success":false,"error":"scopes must be a list of strings"}`},
		{"GET", path, "alice:" + alicePW, "", 200, `{"success":true,"user_id":"alice","has_app_password":false}`},
		{"GET", "/api/v1/users/alice/access", "alice:" + alicePW, "", 200, `{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`},
		{"POST", path, "alice:" + alicePW2, "", 401, `{"success":false,"error":"Invalid app password"}`},
		{"DELETE", path, "alice:" + alicePW2, "", 401, `{"success":false,"error":"Invalid credentials"}`},
		// Three counted failures: the limit is used up.
		{"POST", path, "alice:" + alicePW, "", 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`},
		{"DELETE", path, "alice:" + alicePW, "", 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`},
		{"POST", "/api/v1/users/alice/app-password/", "alice:" + alicePW, "", 400, `{"success":false,"error":"Invalid path"}`},
		{"PUT", path, "alice:" + alicePW, "", 405, `{"success":false,"error":"Method not allowed"}`},
	} {
		a := e.call(c.method, c.path, c.auth, c.body)
		if a.status != c.status || c.answer != "" && a.body != c.answer {
			t.Fatalf("%s %s %.40q: %d %s, want %d %s", c.method, c.path, c.body, a.status, a.body, c.status, c.answer)
		}
		if n := len(mcp.Requests()); n != 0 {
			t.Fatalf("%s %s %.40q (%d) reached the MCP server", c.method, c.path, c.body, c.status)
		}
	}
	if lines := e.deliveryLines(); len(lines) != 0 {
		t.Fatalf("deliveries logged: %v", lines)
	}
	// The pass-through is untouched: the MCP server's other paths are
	// its own (the double answers them 404).
	if a := e.call("GET", "/mcp", "", ""); a.status != 404 || len(mcp.Requests()) != 1 {
		t.Fatalf("pass-through: %d %s", a.status, a.body)
	}
}

// Under another prefix the MCP server's route is still at /api/v1: the
// delivery goes there, with the query and everything else as sent.
func TestDeliveryUnderAnotherPrefix(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "prefix /mcp/api/v1")
	e.nc.AddUser("ada lovelace", "", alicePW)
	e.call("POST", "/mcp/api/v1/users/ada%20lovelace/app-password?from=astrolabe", "ada lovelace:"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"App password stored for ada lovelace","scopes":null}`)
	got := mcp.Requests()
	if len(got) != 1 || got[0].Path != "/api/v1/users/ada lovelace/app-password" || got[0].RawQuery != "from=astrolabe" {
		t.Fatalf("the MCP server received %+v", got)
	}
	if _, ok := mcp.Get("ada lovelace"); !ok {
		t.Fatal("the MCP server holds no row")
	}
}

// A user provisioned before the module exists only in the MCP server's
// table. Their DELETE finds nothing in Vault, and is delivered all the
// same: the MCP server drops its row.
func TestDeliveryOfADeleteOnlyTheMCPServerHolds(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "")
	e.nc.AddUser("bob", "", alicePW)
	mcp.Put("bob", fakemcp.Record{Password: alicePW, CreatedAt: 1_700_000_000, UpdatedAt: 1_700_000_000})
	e.call("DELETE", "/api/v1/users/bob/app-password", "bob:"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"No app password found to delete"}`)
	if _, ok := mcp.Get("bob"); ok {
		t.Fatal("the MCP server kept the row")
	}
	expectDelivery(t, e.lastDelivery(), "info", msgDelivered, "accepted", 200, "App password deleted for bob")
}

// Astrolabe's revocation after the user revoked the token in Nextcloud:
// the module deletes on the stored password, the MCP server cannot prove
// it any more and refuses with 401. The client gets 200 for the Vault
// deletion; the log says the MCP server kept its copy.
func TestDeliveryOfARevokedPasswordsDelete(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "")
	e.nc.AddUser("bob", "", alicePW)
	const path = "/api/v1/users/bob/app-password"
	e.call("POST", path, "bob:"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"App password stored for bob","scopes":null}`)
	e.nc.Revoke("bob", alicePW)
	e.call("DELETE", path, "bob:"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"App password deleted for bob"}`)
	if got := e.stored("bob"); got != nil {
		t.Fatalf("Vault still holds %v", got)
	}
	if _, ok := mcp.Get("bob"); !ok {
		t.Fatal("the double dropped its row although it refused")
	}
	expectDelivery(t, e.lastDelivery(), "warn", msgKeptItsCopy, "refused", 401, "Invalid credentials")

	// Any other failure of a DELETE is a 502: with a password Nextcloud
	// accepts, the retry (Vault has no record now) is delivered again.
	e.nc.AddUser("bob", "", alicePW2)
	mcp.down()
	e.call("DELETE", path, "bob:"+alicePW2, "").expect(t, 502, notAccepted)
	mcp.up()
	e.call("DELETE", path, "bob:"+alicePW2, "").
		expect(t, 200, `{"success":true,"message":"No app password found to delete"}`)
	if _, ok := mcp.Get("bob"); ok {
		t.Fatal("the MCP server kept its row")
	}
}

// Astrolabe's DELETE carries no body, and an operator's PATCH only
// scopes. The MCP server logs in to Nextcloud as the body's username, else
// as the uid: for a user who logs in with another name (e-mail, LDAP) the
// delivery must carry the stored login name, or the MCP server refuses
// and keeps its row. Before the login name was added, the DELETE reached
// the MCP server without a body, it answered 401 and kept alice's
// password, and the PATCH was answered 502 (issue: "Delivery carries the
// stored login name").
func TestDeliveryCarriesTheStoredLoginName(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "")
	e.nc.AddUser("alice", "alice@example.com", alicePW)
	const path = "/api/v1/users/alice/app-password"
	e.call("POST", path, "alice:"+alicePW, `{"username": "alice@example.com"}`).
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)

	e.call("PATCH", "/api/v1/users/alice/scopes", "alice:"+alicePW, `{"scopes": ["notes.read"]}`).
		expect(t, 200, `{"success":true,"message":"Scopes updated successfully","scopes":["notes.read"]}`)
	if got := string(mcp.Requests()[1].Body); got != `{"username":"alice@example.com","scopes": ["notes.read"]}` {
		t.Fatalf("the PATCH delivered %s", got)
	}
	if row, ok := mcp.Get("alice"); !ok || !slices.Equal(row.Scopes, []string{"notes.read"}) {
		t.Fatalf("the MCP server holds %+v, %v", row, ok)
	}

	e.call("DELETE", path, "alice:"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"App password deleted for alice"}`)
	if got := e.stored("alice"); got != nil {
		t.Fatalf("Vault still holds %v", got)
	}
	got := mcp.Requests()[2]
	if got.Method != "DELETE" || string(got.Body) != `{"username":"alice@example.com"}` || got.ContentLength != int64(len(got.Body)) {
		t.Fatalf("the MCP server received %+v", got)
	}
	if _, ok := mcp.Get("alice"); ok {
		t.Fatal("the MCP server kept the password alice removed")
	}
	expectDelivery(t, e.lastDelivery(), "info", msgDelivered, "accepted", 200, "App password deleted for alice")
}

// A hung MCP server: the delivery ends at its timeout (shortened here),
// the client gets 502 and Vault keeps the record.
func TestDeliveryToAHungMCPServerEnds(t *testing.T) {
	old := deliveryTimeout
	deliveryTimeout = 300 * time.Millisecond
	t.Cleanup(func() { deliveryTimeout = old })
	e, mcp := newDeliveryEnv(t, "")
	mcp.hold()
	t.Cleanup(func() { close(mcp.release) })
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 502, notAccepted)
	line := e.lastDelivery()
	if line["mcp_outcome"] != "unreachable" || line["mcp_status"] != float64(http.StatusGatewayTimeout) {
		t.Fatalf("delivery logged %v", line)
	}
	if got := e.stored("alice"); got["app_password"] != alicePW {
		t.Fatalf("Vault holds %v", got)
	}
}

// The client gives up while the MCP server works: Vault has the change,
// and the delivery runs to its end all the same.
func TestDeliveryOutlivesTheClient(t *testing.T) {
	e, mcp := newDeliveryEnv(t, "")
	mcp.hold()
	e.nc.AddUser("alice", "", alicePW)
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "POST", e.base+"/api/v1/users/alice/app-password", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", alicePW)
	done := make(chan error, 1)
	go func() {
		resp, err := e.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-mcp.arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the client's request ended with %v", err)
	}
	close(mcp.release)
	// Nothing answers anyone now: the delivery's log line says it ended.
	waitFor(t, 10*time.Second, "the delivery's log line", func() bool { return len(e.deliveryLines()) > 0 })
	expectDelivery(t, e.lastDelivery(), "info", msgDelivered, "accepted", 200, "App password stored for alice")
	if row, ok := mcp.Get("alice"); !ok || row.Password != alicePW {
		t.Fatalf("the MCP server holds %+v", row)
	}
	if got := e.stored("alice"); got["app_password"] != alicePW {
		t.Fatalf("Vault holds %v", got)
	}
}
