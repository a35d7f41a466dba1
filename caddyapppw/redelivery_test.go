package caddyapppw

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
)

// These tests hold the convergence promise: a change Vault took and the
// MCP server did not is delivered again in the background, with no client
// request, until the MCP server holds what Vault holds. They run on the
// memory store under -short and on the dev Vault otherwise; the MCP server
// is the faithful double (its gate, limiter, Nextcloud check and table).

// newRedeliveryEnv is newDeliveryEnv with re-delivery rounds every
// interval.
func newRedeliveryEnv(t *testing.T, interval string, settings ...string) (*env, *mcpUpstream) {
	t.Helper()
	e := newEnv(t, "")
	mcp := newMCPUpstream(t, e.nc.URL)
	mcp.SetClock(e.clock.Now)
	e.backend.URL = mcp.addr
	e.load(e.caddyfile(redeliveryBlock(mcp.addr, interval) + strings.Join(settings, "\n")))
	return e, mcp
}

func (a answer) expectStatus(t *testing.T, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("got %d %s, want %d", a.status, a.body, status)
	}
}

// rounds is how many re-delivery rounds this process has run.
func rounds() float64 { return testutil.ToFloat64(metrics.redeliveryRounds) }

func redeliveryBlock(addr, interval string) string {
	return "deliver_to_mcp http://" + addr + " {\n interval " + interval + "\n}\n"
}

// converged waits until the MCP server's row for uid and Vault's record
// agree: both absent, or both present with the same password, login name
// and scopes, and Vault's record owing nothing.
func converged(t *testing.T, e *env, mcp *mcpUpstream, uid string) {
	t.Helper()
	waitFor(t, 20*time.Second, uid+" to converge", func() bool { return agree(e, mcp, uid) == "" })
}

// agree says how Vault's record and the MCP server's row for uid differ,
// "" when they agree.
func agree(e *env, mcp *mcpUpstream, uid string) string {
	rec := e.stored(uid)
	row, has := mcp.Get(uid)
	switch {
	case rec == nil && !has:
		return ""
	case rec == nil:
		return "only the MCP server holds it"
	case !has:
		return "only Vault holds it"
	case rec["mcp_pending"] != nil:
		return "Vault's record owes " + rec["mcp_pending"].(string)
	case rec["app_password"] != row.Password:
		return "passwords differ"
	}
	login, _ := rec["username"].(string)
	if login != row.Username {
		return "login names differ: " + login + " / " + row.Username
	}
	var scopes []string
	if list, ok := rec["scopes"].([]any); ok {
		scopes = []string{}
		for _, s := range list {
			scopes = append(scopes, s.(string))
		}
	}
	if !slices.Equal(scopes, row.Scopes) || (scopes == nil) != (row.Scopes == nil) {
		return "scopes differ"
	}
	return ""
}

// redeliveryLines are the module's log lines about re-deliveries.
func (e *env) redeliveryLines() []map[string]any {
	var out []map[string]any
	for _, l := range e.logLinesOf("http.handlers.app_password.redelivery") {
		if l["result"] != nil {
			out = append(out, l)
		}
	}
	return out
}

// A POST the MCP server could not take (down) is answered 502, marked on
// the record, and delivered again once the MCP server is back, as the
// whole record: password, login name and scopes. Before re-delivery, the
// MCP server never got alice's password (nothing retried it).
func TestRedeliveryAfterAnOutage(t *testing.T) {
	e, mcp := newRedeliveryEnv(t, "100ms")
	e.nc.AddUser("alice", "alice@example.com", alicePW)
	mcp.down()
	const path = "/api/v1/users/alice/app-password"
	e.call("POST", path, "alice:"+alicePW, `{"username": "alice@example.com", "scopes": ["notes.read"]}`).
		expect(t, 502, notAccepted)
	rec := e.stored("alice")
	if rec == nil || rec["mcp_pending"] != "post" || rec["mcp_pending_since"] == nil {
		t.Fatalf("Vault holds %v, want the record marked pending post", rec)
	}
	// The API answers for the record as stored: it is provisioned.
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expectStatus(t, 200)
	// Operators see it: the rounds find one record owing a change.
	from := rounds()
	waitFor(t, 20*time.Second, "a round", func() bool { return rounds() > from })
	if got := testutil.ToFloat64(metrics.pendingDeliveries); got != 1 {
		t.Fatalf("deliveries_pending %v while the MCP server is down", got)
	}
	accepted := testutil.ToFloat64(metrics.redeliveries.WithLabelValues("accepted"))

	mcp.up()
	converged(t, e, mcp, "alice")
	from = rounds()
	waitFor(t, 20*time.Second, "a round", func() bool { return rounds() > from })
	if got := testutil.ToFloat64(metrics.pendingDeliveries); got != 0 {
		t.Fatalf("deliveries_pending %v after convergence", got)
	}
	if got := testutil.ToFloat64(metrics.redeliveries.WithLabelValues("accepted")); got != accepted+1 {
		t.Fatalf("redeliveries_total{result=accepted} went from %v to %v", accepted, got)
	}
	row, _ := mcp.Get("alice")
	if row.Password != alicePW || row.Username != "alice@example.com" || !slices.Equal(row.Scopes, []string{"notes.read"}) {
		t.Fatalf("the MCP server holds %+v", row)
	}
	got := mcp.Requests()[0]
	if got.Method != "POST" || got.Header.Get("Authorization") != basicAuthHeader("alice", alicePW) ||
		string(got.Body) != `{"username":"alice@example.com","scopes":["notes.read"]}` {
		t.Fatalf("re-delivered %s %s %s", got.Method, got.Path, got.Body)
	}
	lines := e.redeliveryLines()
	if len(lines) == 0 || lines[len(lines)-1]["result"] != "accepted" || lines[len(lines)-1]["msg"] != "re-delivered to the MCP server" {
		t.Fatalf("re-delivery lines %v", lines)
	}
	assertNoSecretLogged(t, e, alicePW)
}

// The current state wins over a stale one: a PATCH the MCP server did not
// take (503), then a re-provisioning with a new password it did not take
// either. The first thing the MCP server gets back is the new password
// with the new record's scopes, as one POST: never the old scopes first.
func TestRedeliveryCurrentStateWins(t *testing.T) {
	e, mcp := newRedeliveryEnv(t, "100ms")
	e.nc.AddUser("bob", "bob@example.com", alicePW, alicePW2)
	const path = "/api/v1/users/bob/app-password"
	e.call("POST", path, "bob:"+alicePW, `{"username": "bob@example.com"}`).expectStatus(t, 200)

	mcp.failWith(http.StatusServiceUnavailable)
	e.call("PATCH", "/api/v1/users/bob/scopes", "bob:"+alicePW, `{"scopes": ["deck.read"]}`).expect(t, 502, notAccepted)
	if rec := e.stored("bob"); rec["mcp_pending"] != "patch" {
		t.Fatalf("after the PATCH Vault holds %v", rec)
	}
	e.call("POST", path, "bob:"+alicePW2, `{"username": "bob@example.com", "scopes": ["files.read"]}`).expect(t, 502, notAccepted)
	if rec := e.stored("bob"); rec["mcp_pending"] != "post" {
		t.Fatalf("after the new POST Vault holds %v", rec)
	}
	before := len(mcp.Requests())
	mcp.failWith(0)
	converged(t, e, mcp, "bob")
	reqs := mcp.Requests()[before:]
	if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Header.Get("Authorization") != basicAuthHeader("bob", alicePW2) {
		t.Fatalf("after the outage the MCP server got %d requests, the first %s", len(reqs), reqs[0].Method)
	}
	if row, _ := mcp.Get("bob"); row.Password != alicePW2 || !slices.Equal(row.Scopes, []string{"files.read"}) {
		t.Fatalf("the MCP server holds %+v", row)
	}
}

// A DELETE the MCP server could not take, for a user whose login name is
// not the uid: answered 502; Vault keeps the record, marked removed and
// hidden from the API, so the deletion can still be delivered with a
// password Nextcloud accepts; once the MCP server is back it deletes its
// row and then Vault lets go of the record. Before, the record was gone
// from Vault at once and the MCP server kept alice's password for ever.
func TestRedeliveryOfADelete(t *testing.T) {
	e, mcp := newRedeliveryEnv(t, "100ms")
	e.nc.AddUser("carol", "carol@example.com", alicePW)
	const path = "/api/v1/users/carol/app-password"
	e.call("POST", path, "carol:"+alicePW, `{"username": "carol@example.com"}`).expectStatus(t, 200)
	mcp.down()
	e.call("DELETE", path, "carol:"+alicePW, "").expect(t, 502, notAccepted)
	if rec := e.stored("carol"); rec == nil || rec["mcp_pending"] != "delete" {
		t.Fatalf("Vault holds %v, want the record marked removed", rec)
	}
	e.call("GET", path, "carol:"+alicePW, "").
		expect(t, 200, `{"success":true,"user_id":"carol","has_app_password":false}`)
	e.call("GET", "/api/v1/users/carol/access", "carol:"+alicePW, "").
		expect(t, 200, `{"success":true,"user_id":"carol","provisioned":false,"scopes":null,"username":null}`)
	e.call("PATCH", "/api/v1/users/carol/scopes", "carol:"+alicePW, `{"scopes": []}`).
		expect(t, 404, `{"success":false,"error":"No app password provisioned for this user"}`)

	mcp.up()
	converged(t, e, mcp, "carol")
	if e.stored("carol") != nil {
		t.Fatal("Vault still holds carol's record")
	}
	last := mcp.Requests()[len(mcp.Requests())-1]
	if last.Method != "DELETE" || string(last.Body) != `{"username":"carol@example.com"}` {
		t.Fatalf("re-delivered %s %s", last.Method, last.Body)
	}
}

// A DELETE retried by the client after a failed delivery works for a
// user whose login name is not the uid: the marked record still holds the
// password and the login name. Before, the record was gone and the retry
// was checked against Nextcloud as the uid: 401, counted, never delivered.
func TestRetriedDeleteAfterAFailedDelivery(t *testing.T) {
	e, mcp := newRedeliveryEnv(t, "1h")
	e.nc.AddUser("carol", "carol@example.com", alicePW)
	const path = "/api/v1/users/carol/app-password"
	e.call("POST", path, "carol:"+alicePW, `{"username": "carol@example.com"}`).expectStatus(t, 200)
	mcp.failWith(http.StatusBadGateway)
	e.call("DELETE", path, "carol:"+alicePW, "").expect(t, 502, notAccepted)
	// The failure's own round (rounds are an hour apart otherwise) meets
	// the MCP server failing too; only then does it come back, so the
	// client's retry, not a round, delivers the deletion.
	waitFor(t, 20*time.Second, "the failure's round", func() bool {
		for _, l := range e.redeliveryLines() {
			if l["user_id"] == "carol" && l["result"] == "unreachable" {
				return true
			}
		}
		return false
	})
	mcp.failWith(0)
	e.call("DELETE", path, "carol:"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"App password deleted for carol"}`)
	if e.stored("carol") != nil {
		t.Fatal("Vault still holds carol's record")
	}
	if _, has := mcp.Get("carol"); has {
		t.Fatal("the MCP server still holds carol's password")
	}
}

// The MCP server's own limit: its 429 means "later", after its
// Retry-After, not "never". Re-deliveries stop until then (the clock does
// not move: rounds come and go, the MCP server is not asked again), then
// go on.
func TestRedeliveryWaitsForTheMCPServersRetryAfter(t *testing.T) {
	e, mcp := newRedeliveryEnv(t, "100ms", "rate_limit 10 1h")
	e.nc.AddUser("dave", "dave", alicePW)
	const path = "/api/v1/users/dave/app-password"
	for range fakemcp.Limit {
		e.call("POST", path, "dave:"+alicePW, "").expectStatus(t, 200)
	}
	mcp.down()
	e.call("POST", path, "dave:"+alicePW, `{"scopes": ["talk.read"]}`).expect(t, 502, notAccepted)
	mcp.up()
	waitFor(t, 20*time.Second, "a throttled re-delivery", func() bool {
		for _, l := range e.redeliveryLines() {
			if l["result"] == "throttled" && l["mcp_status"] == float64(429) {
				return true
			}
		}
		return false
	})
	asked, from := len(mcp.Requests()), rounds()
	waitFor(t, 20*time.Second, "three more rounds", func() bool { return rounds() >= from+3 })
	if n := len(mcp.Requests()); n != asked {
		t.Fatalf("the MCP server was asked %d more times before its Retry-After", n-asked)
	}
	e.clock.Advance(time.Hour)
	converged(t, e, mcp, "dave")
	if row, _ := mcp.Get("dave"); !slices.Equal(row.Scopes, []string{"talk.read"}) {
		t.Fatalf("the MCP server holds %+v", row)
	}
}

// A refusal other than 429 is not retried: logged, counted, and the mark
// cleared. Here the MCP server's scope list lacks one the module allows.
func TestRedeliveryRefusedIsNotRetried(t *testing.T) {
	e, mcp := newRedeliveryEnv(t, "100ms")
	e.nc.AddUser("erin", "erin", alicePW)
	const path = "/api/v1/users/erin/app-password"
	e.call("POST", path, "erin:"+alicePW, "").expectStatus(t, 200)
	mcp.failWith(http.StatusServiceUnavailable)
	e.call("PATCH", "/api/v1/users/erin/scopes", "erin:"+alicePW, `{"scopes": ["notes.read"]}`).expect(t, 502, notAccepted)
	// The MCP server now refuses: its row is gone (an operator deleted it),
	// so a PATCH is 404 there.
	mcp.Delete("erin")
	mcp.failWith(0)
	waitFor(t, 20*time.Second, "the refusal", func() bool {
		lines := e.redeliveryLines()
		return len(lines) > 0 && lines[len(lines)-1]["result"] == "refused"
	})
	if rec := e.stored("erin"); rec["mcp_pending"] != nil {
		t.Fatalf("Vault still marks %v", rec["mcp_pending"])
	}
	if l := e.redeliveryLines(); l[len(l)-1]["level"] != "error" || l[len(l)-1]["mcp_status"] != float64(404) {
		t.Fatalf("refusal logged as %v", l[len(l)-1])
	}
}

// The mark lives in the store, not in the process: a new config (as after
// a reload or a restart) finds it and delivers it. The first config's
// rounds are an hour apart, so only the second config's can deliver.
func TestRedeliverySurvivesAReload(t *testing.T) {
	e, mcp := newRedeliveryEnv(t, "1h")
	e.nc.AddUser("frank", "frank", alicePW)
	mcp.down()
	e.call("POST", "/api/v1/users/frank/app-password", "frank:"+alicePW, "").expect(t, 502, notAccepted)
	mcp.up()
	if got := agree(e, mcp, "frank"); got != "only Vault holds it" {
		t.Fatalf("before the reload: %q", got)
	}
	e.load(e.caddyfile(redeliveryBlock(mcp.addr, "100ms")))
	converged(t, e, mcp, "frank")
}

// Nothing that failed the module's own checks is ever marked or
// re-delivered: the mark is for changes Vault took.
func TestRedeliveryNeverForAFailedCheck(t *testing.T) {
	e, mcp := newRedeliveryEnv(t, "100ms")
	e.nc.AddUser("gina", "gina", alicePW)
	mcp.down()
	e.call("POST", "/api/v1/users/gina/app-password", "gina:"+alicePW2, "").expectStatus(t, 401)
	mcp.up()
	if e.stored("gina") != nil || len(mcp.Requests()) != 0 {
		t.Fatal("a refused POST reached Vault or the MCP server")
	}
	if lines := e.redeliveryLines(); len(lines) != 0 {
		t.Fatalf("re-deliveries logged: %v", lines)
	}
}
