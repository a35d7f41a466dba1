package caddyapppw

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep/sweeptest"
)

// sweepStart is where the sweepers' clock starts in these tests, as the
// handlers' own clock (env.clock) does.
var sweepStart = time.Unix(1_800_000_000, 0)

func init() {
	// A clock nobody moves: in the tests that are not about the sweep,
	// the sweeper waits for its first round for ever, so no round checks
	// passwords behind a test's back. The sweep's tests set their own
	// (useSweepClock).
	sweepClock = sweeptest.NewClock(sweepStart)
}

// sweepFast is the sweep block of the tests: the highest rate, so a
// round takes few steps of the fake clock.
const sweepFast = "sweep {\n rate 50\n }"

// useSweepClock gives the sweepers provisioned from now on a clock the
// test moves by hand.
func useSweepClock(t *testing.T) *sweeptest.Clock {
	t.Helper()
	c := sweeptest.NewClock(sweepStart)
	old := sweepClock
	sweepClock = c
	t.Cleanup(func() { sweepClock = old })
	return c
}

// useAutoSweepClock gives the sweepers provisioned from now on a clock
// that moves itself to every timer: for the commands' rounds, which must
// not wait. (A scheduled sweeper on it would run round after round.)
func useAutoSweepClock(t *testing.T) {
	t.Helper()
	c := sweeptest.NewClock(sweepStart)
	c.SetAuto(true)
	old := sweepClock
	sweepClock = c
	t.Cleanup(func() { sweepClock = old })
}

// driveSweep moves clock from timer to timer until the next one is past
// end. Before each step it waits until the n running sweepers all wait on
// the clock: an idle sweeper waits on its schedule, one in a round on the
// rate of its checks. A round's last step ends with all its checks
// answered, so once the next timer is past end, every round that started
// before it is over.
func driveSweep(t *testing.T, clock *sweeptest.Clock, n int, end time.Time) {
	t.Helper()
	for {
		if err := clock.WaitPending(n, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		next, _ := clock.Next()
		if next.After(end) {
			return
		}
		clock.AdvanceTo(next)
	}
}

// sweepUser is one user the sweep tests store.
type sweepUser struct {
	id, login, password string
}

// seedSweepUsers stores n users u000… in Vault, as the API would have,
// and gives each the same app password in the fake Nextcloud, except the
// revoked ones (half of them with the user deleted, half with only the
// app password revoked). Every third user logged in with an e-mail
// address, which is stored as the username: the sweep must check as that
// name. Nextcloud answers 500 for the broken ones.
func seedSweepUsers(e *env, n int, revoked, broken []string) []sweepUser {
	e.t.Helper()
	var users []sweepUser
	for i := range n {
		u := sweepUser{id: fmt.Sprintf("u%03d", i), password: fmt.Sprintf("Sweep-Pass-Word-%05d-Xyzab", i)}
		u.login = u.id
		var username any
		loginName := ""
		if i%3 == 0 {
			u.login = u.id + "@example.com"
			username, loginName = u.login, u.login
		}
		e.putRecord(u.id, map[string]any{
			"user_id": u.id, "app_password": u.password, "username": username, "scopes": nil,
			"created_at": 1_799_000_000 + i, "updated_at": 1_799_500_000 + i,
		})
		switch {
		case !slices.Contains(revoked, u.id):
			e.nc.AddUser(u.id, loginName, u.password)
		case i%2 == 1:
			e.nc.AddUser(u.id, loginName) // the app password revoked
		}
		if slices.Contains(broken, u.id) {
			e.nc.SetLoginFault(u.login, fakenextcloud.Fault{Status: 500})
		}
		users = append(users, u)
	}
	return users
}

// storedIDs lists the keys below the test's prefix, straight from Vault.
func (e *env) storedIDs() []string {
	e.t.Helper()
	p := e.mount + "/metadata/" + e.prefix
	if e.kv == 1 {
		p = e.mount + "/" + e.prefix
	}
	sec, err := e.vault.Root.Logical().ListWithContext(e.t.Context(), p)
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	if sec != nil {
		for _, k := range sec.Data["keys"].([]any) {
			ids = append(ids, k.(string))
		}
	}
	slices.Sort(ids)
	return ids
}

// loggerLines returns the log lines of one logger with message msg (any
// message when msg is empty).
func (e *env) loggerLines(logger, msg string) []map[string]any {
	e.t.Helper()
	data, err := os.ReadFile(e.logFile)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(data, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["logger"] == logger && (msg == "" || m["msg"] == msg) {
			out = append(out, m)
		}
	}
	return out
}

// userIDs returns the user_id of each line, sorted.
func userIDs(lines []map[string]any) []string {
	var ids []string
	for _, l := range lines {
		ids = append(ids, fmt.Sprint(l["user_id"]))
	}
	slices.Sort(ids)
	return ids
}

// noSweepSecrets fails when the log shows any stored password.
func (e *env) noSweepSecrets() {
	e.t.Helper()
	data, err := os.ReadFile(e.logFile)
	if err != nil {
		e.t.Fatal(err)
	}
	if bytes.Contains(data, []byte("Sweep-Pass-Word-")) {
		e.t.Error("the log shows a stored password")
	}
}

const (
	sweepLogger   = "http.handlers.app_password.sweep"
	auditLogger   = "http.handlers.app_password.audit"
	msgSweepGone  = "sweep deleted a stale app password: nextcloud rejects it"
	msgSweepKept  = "sweep kept an app password it could not check"
	msgSweepEnded = "sweep round ended"
)

// sweepRevoked are 20 of 200 users whose password Nextcloud no longer
// accepts; sweepBroken are 5 it answers 500 for.
var (
	sweepRevoked = func() (ids []string) {
		for i := 5; i < 200; i += 10 {
			ids = append(ids, fmt.Sprintf("u%03d", i))
		}
		return ids
	}()
	sweepBroken = []string{"u033", "u077", "u111", "u150", "u188"}
)

// One scheduled round in a running Caddy deletes exactly the revoked
// passwords, keeps those Nextcloud could not answer for, writes an audit
// line per deletion, and counts it all; the MCP server behind hears of
// none of it (deliver_to_mcp is on: it sweeps its own copy).
func TestSweepRoundThroughCaddy(t *testing.T) {
	needsVault(t)
	clock := useSweepClock(t)
	e := newEnv(t, "deliver_to_mcp 127.0.0.1:9\n"+sweepFast)
	// The README's advice for a backlog: the proxy on Nextcloud's
	// brute-force allow-list (TestSweepStopsAtNextcloudThrottle is
	// without it).
	e.nc.BypassBruteForce("127.0.0.1")
	users := seedSweepUsers(e, 200, sweepRevoked, sweepBroken)
	before := e.scrape()

	driveSweep(t, clock, 1, sweepStart.Add(30*time.Minute))

	var want []string
	for _, u := range users {
		if !slices.Contains(sweepRevoked, u.id) {
			want = append(want, u.id)
		}
	}
	want = append(want, "_sweep/") // the lease, a folder: no user
	slices.Sort(want)
	if got := e.storedIDs(); !slices.Equal(got, want) {
		t.Errorf("Vault holds %d keys, want the %d users not revoked and _sweep/:\n%v", len(got), len(want)-1, got)
	}
	for _, id := range sweepBroken {
		if got := e.stored(id); got["app_password"] != users[idx(id)].password {
			t.Errorf("%s, which Nextcloud answered 500 for, holds %v", id, got)
		}
	}

	gone := e.loggerLines(auditLogger, msgSweepGone)
	if got := userIDs(gone); !slices.Equal(got, sweepRevoked) {
		t.Errorf("audit lines for %v, want %v", got, sweepRevoked)
	}
	for _, l := range gone {
		if u := users[idx(l["user_id"].(string))]; l["login"] != u.login || l["version"] != 1.0 {
			t.Errorf("audit line %v, want login %s, version 1", l, u.login)
		}
	}
	kept := e.loggerLines(sweepLogger, msgSweepKept)
	if got := userIDs(kept); !slices.Equal(got, sweepBroken) {
		t.Errorf("kept lines for %v, want %v", got, sweepBroken)
	}
	for _, l := range kept {
		if l["reason"] != "nextcloud check failed: nextcloud answered HTTP 500" {
			t.Errorf("kept line %v", l)
		}
	}
	ended := e.loggerLines(sweepLogger, msgSweepEnded)
	if len(ended) != 1 || ended[0]["deleted"] != 20.0 || ended[0]["kept_on_error"] != 5.0 || ended[0]["checked"] != 200.0 ||
		ended[0]["stopped"] != "" || ended[0]["level"] != "info" {
		t.Errorf("round lines %v", ended)
	}

	after := e.scrape()
	for _, c := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"caddy_app_password_sweep_rounds_total", []string{`result="complete"`}, 1},
		{"caddy_app_password_sweep_checked_total", []string{`verdict="valid"`}, 175},
		{"caddy_app_password_sweep_checked_total", []string{`verdict="rejected"`}, 20},
		{"caddy_app_password_sweep_checked_total", []string{`verdict="unavailable"`}, 5},
		{"caddy_app_password_sweep_deleted_total", nil, 20},
		{"caddy_app_password_sweep_kept_on_error_total", nil, 5},
	} {
		if d := metricValue(t, after, c.name, c.labels...) - metricValue(t, before, c.name, c.labels...); d != c.delta {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, d, c.delta)
		}
	}
	// The round ran on the sweep's clock: within the first tenth of the
	// interval, 200 checks at 50 a second.
	last := metricValue(t, after, "caddy_app_password_sweep_last_round_timestamp_seconds")
	if first := float64(sweepStart.Unix()); last < first+3.98 || last > first+360+4 {
		t.Errorf("last round at %v, want within the first 6 minutes and 4 s after %v", last, first)
	}

	if reqs := e.backend.requests(); len(reqs) != 0 {
		t.Errorf("the sweep reached the MCP server: %d requests, the first %s %s", len(reqs), reqs[0].method, reqs[0].uri)
	}
	for i, ff := range e.nc.ForwardedFor() {
		if ff != "" {
			t.Fatalf("check %d carried X-Forwarded-For %q", i, ff)
		}
	}
	e.noSweepSecrets()
}

// idx is the index of user u### in seedSweepUsers' list.
func idx(id string) int {
	var i int
	fmt.Sscanf(id, "u%03d", &i)
	return i
}

// Nextcloud's brute-force protection answers 429 once the proxy's address
// failed more than ten logins: the round stops at once, having deleted
// only passwords Nextcloud rejected. The revoked users it did not reach
// and every valid one are still stored.
func TestSweepStopsAtNextcloudThrottle(t *testing.T) {
	needsVault(t)
	clock := useSweepClock(t)
	e := newEnv(t, sweepFast)
	var revoked []string
	for i := range 20 {
		revoked = append(revoked, fmt.Sprintf("u%03d", i))
	}
	users := seedSweepUsers(e, 40, revoked, nil)
	before := e.scrape()

	driveSweep(t, clock, 1, sweepStart.Add(30*time.Minute))

	gone := userIDs(e.loggerLines(auditLogger, msgSweepGone))
	// Eleven failures reach the maximum delay; of two checks in flight
	// at once, either may get the 429 first.
	if len(gone) < 11 || len(gone) > 12 || slices.ContainsFunc(gone, func(id string) bool { return !slices.Contains(revoked[:13], id) }) {
		t.Fatalf("deleted %v; want 11 or 12 of the first 13 revoked users", gone)
	}
	stored := e.storedIDs()
	for _, u := range users {
		if slices.Contains(stored, u.id) == slices.Contains(gone, u.id) {
			t.Errorf("%s: stored %v, deleted %v", u.id, slices.Contains(stored, u.id), slices.Contains(gone, u.id))
		}
	}
	ended := e.loggerLines(sweepLogger, msgSweepEnded)
	if len(ended) != 1 || ended[0]["stopped"] != "nextcloud_throttled" || ended[0]["level"] != "warn" ||
		!strings.HasPrefix(ended[0]["stop_detail"].(string), "nextcloud answered 429 for u0") {
		t.Fatalf("round lines %v", ended)
	}
	if n := ended[0]["unchecked"].(float64); n < 20 {
		t.Errorf("%v users unchecked, want the 20 valid ones at least", n)
	}
	after := e.scrape()
	if d := metricValue(t, after, "caddy_app_password_sweep_rounds_total", `result="nextcloud_throttled"`) -
		metricValue(t, before, "caddy_app_password_sweep_rounds_total", `result="nextcloud_throttled"`); d != 1 {
		t.Errorf("throttled rounds moved by %v", d)
	}
	if d := metricValue(t, after, "caddy_app_password_sweep_checked_total", `verdict="throttled"`) -
		metricValue(t, before, "caddy_app_password_sweep_checked_total", `verdict="throttled"`); d < 1 {
		t.Errorf("throttled checks moved by %v", d)
	}
	if e.nc.Throttled("127.0.0.1") == 0 {
		t.Error("Nextcloud never throttled the proxy: the test proves nothing")
	}
}

// A user who provisions a new password while the round checks the old
// one keeps the new one, on KV v2 (by its version) and on KV v1 (by the
// record's fingerprint).
func TestSweepKeepsReprovisionedUser(t *testing.T) {
	for _, kv := range []int{2, 1} {
		t.Run(fmt.Sprintf("KV v%d", kv), func(t *testing.T) {
			needsVault(t)
			clock := useSweepClock(t)
			e := newEnv(t, sweepFast)
			if kv == 1 {
				e.useKVv1()
			}
			// Nextcloud has only the new password; Vault the old one.
			e.nc.AddUser("alice", "", alicePW2)
			e.putRecord("alice", map[string]any{
				"user_id": "alice", "app_password": alicePW, "username": nil, "scopes": nil,
				"created_at": 1_799_000_000, "updated_at": 1_799_000_000,
			})
			// The sweep's check of the old password waits until Astrolabe
			// has provisioned the new one through Caddy.
			proxy := newHoldingProxy(t, e.nc.URL, alicePW, func() error {
				a := e.post("/api/v1/users/alice/app-password", "alice:"+alicePW2)
				if a != `200 {"success":true,"message":"App password stored for alice","scopes":null}` {
					return fmt.Errorf("re-provisioning: %s", a)
				}
				return nil
			})
			e.load(strings.ReplaceAll(e.caddyfile(sweepFast), e.nc.URL, proxy.URL))

			driveSweep(t, clock, 1, sweepStart.Add(30*time.Minute))

			if err := proxy.err(); err != nil {
				t.Fatal(err)
			}
			if got := e.stored("alice"); got["app_password"] != alicePW2 {
				t.Fatalf("alice holds %v, want the new password", got)
			}
			if n := len(e.loggerLines(auditLogger, msgSweepGone)); n != 0 {
				t.Errorf("%d deletions", n)
			}
			if got := userIDs(e.loggerLines(sweepLogger, "sweep kept an app password replaced during the round")); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("changed lines for %v", got)
			}
			if got := userIDs(e.loggerLines(auditLogger, "provisioning")); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("provisioning lines for %v", got)
			}
		})
	}
}

// post sends a POST with BasicAuth from any goroutine (env.call may only
// run on the test's) and returns "<status> <body>".
func (e *env) post(path, userPass string) string {
	user, pass, _ := strings.Cut(userPass, ":")
	req, _ := http.NewRequest("POST", e.base+path, nil)
	req.SetBasicAuth(user, pass)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b.String())
}

// The lease of a replica without Redis is a Vault record beside the users'
// that the module's own listing never takes for a user.
func TestSweepLeaseInVault(t *testing.T) {
	needsVault(t)
	clock := useSweepClock(t)
	e := newEnv(t, sweepFast)
	seedSweepUsers(e, 3, nil, nil)
	driveSweep(t, clock, 1, sweepStart.Add(30*time.Minute))
	sec, err := e.vault.Root.KVv2(e.mount).Get(e.t.Context(), e.prefix+"/_sweep/lease")
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := sec.Data["holder"].(string)
	expires, err := time.Parse(time.RFC3339Nano, fmt.Sprint(sec.Data["expires_at"]))
	if host, _ := os.Hostname(); !strings.HasPrefix(holder, host+"-") || err != nil ||
		expires.Before(sweepStart.Add(time.Hour)) || expires.After(sweepStart.Add(66*time.Minute)) {
		t.Fatalf("lease record %v", sec.Data)
	}
	if n := len(e.loggerLines(sweepLogger, msgSweepEnded)); n != 1 {
		t.Fatalf("%d rounds", n)
	}
}

// holdingProxy stands between Caddy and the fake Nextcloud: the first
// request that carries password waits there until before has run.
type holdingProxy struct {
	URL  string
	once sync.Once
	mu   sync.Mutex
	e    error
}

func newHoldingProxy(t *testing.T, target, password string, before func() error) *holdingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &holdingProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); ok && pw == password {
			p.once.Do(func() {
				err := before()
				p.mu.Lock()
				p.e = err
				p.mu.Unlock()
			})
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *holdingProxy) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.e
}
