package caddyapppw

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

const (
	alicePW  = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"
	alicePW2 = "Zyxwv-Utsrq-Ponml-Kjihg-Fedcb"
	// an admin-created 72-character token: valid in the default format
	adminToken = "abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijAB"
)

func TestScopesRoute(t *testing.T) {
	e := newEnv(t, "")
	list, _ := json.Marshal(newTestScopes(t))
	e.call("GET", "/api/v1/scopes", "", "").expect(t, 200, `{"success":true,"scopes":`+string(list)+`}`)
	if n := len(newTestScopes(t)); n != 28 {
		t.Fatalf("%d default scopes, want 28", n)
	}
	a := e.call("POST", "/api/v1/scopes", "", "")
	a.expect(t, 405, `{"success":false,"error":"Method not allowed"}`)
	if got := a.header.Get("Allow"); got != "GET" {
		t.Errorf("Allow = %q", got)
	}
}

func newTestScopes(t *testing.T) []string {
	s, err := newScopeSet(defaultScopes())
	if err != nil {
		t.Fatal(err)
	}
	return s.sorted
}

func TestProvisionAsAstrolabe(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "alice@example.com", alicePW)

	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, `{"username": "alice@example.com"}`).
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)

	got := e.stored("alice")
	want := map[string]any{
		"user_id": "alice", "app_password": alicePW, "username": "alice@example.com",
		"scopes": nil, "created_at": json.Number("1800000000"), "updated_at": json.Number("1800000000"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Vault holds %#v\nwant %#v", got, want)
	}
	if v := e.readableVersions("alice"); !reflect.DeepEqual(v, []int{1}) {
		t.Fatalf("readable versions %v", v)
	}
	if len(e.backend.requests()) != 0 {
		t.Fatal("an API request reached the backend")
	}
}

func TestProvisionLegacyEmptyBodyAndScopes(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("bob", "", adminToken)
	e.nc.AddUser("carol", "", alicePW)

	e.call("POST", "/api/v1/users/bob/app-password", "bob:"+adminToken, "").
		expect(t, 200, `{"success":true,"message":"App password stored for bob","scopes":null}`)
	if got := e.stored("bob"); got["username"] != nil || got["app_password"] != adminToken {
		t.Fatalf("Vault holds %#v", got)
	}

	e.call("POST", "/api/v1/users/carol/app-password", "carol:"+alicePW, `{"scopes": ["notes.read", "files.write", "notes.read"]}`).
		expect(t, 200, `{"success":true,"message":"App password stored for carol","scopes":["notes.read","files.write"]}`)
	if got := e.stored("carol")["scopes"]; !reflect.DeepEqual(got, []any{"notes.read", "files.write"}) {
		t.Fatalf("stored scopes %#v", got)
	}
}

func TestReprovisionKeepsCreatedAtAndOneVersion(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW, alicePW2)

	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.clock.Advance(90 * time.Second)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, `{"scopes":["mail.send"]}`).expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":["mail.send"]}`)

	got := e.stored("alice")
	if got["app_password"] != alicePW2 || got["created_at"] != json.Number("1800000000") || got["updated_at"] != json.Number("1800000090") {
		t.Fatalf("Vault holds %#v", got)
	}
	if v := e.readableVersions("alice"); !reflect.DeepEqual(v, []int{2}) {
		t.Fatalf("readable versions %v, want only [2]", v)
	}
}

func TestUserIDWithSpaceAndApostrophe(t *testing.T) {
	e := newEnv(t, "")
	uid := "o'brien j.d@x"
	e.nc.AddUser(uid, "", alicePW)
	e.call("POST", "/api/v1/users/o%27brien%20j.d@x/app-password", uid+":"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"App password stored for o'brien j.d@x","scopes":null}`)
	if got := e.stored(uid); got["user_id"] != uid {
		t.Fatalf("Vault holds %#v", got)
	}
}

func TestChecksInOrder(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "alice@example.com", alicePW)
	const post = "POST"
	ok := "alice:" + alicePW
	cases := []struct {
		name, method, path, auth, body string
		status                         int
		want                           string
	}{
		{"empty user id", post, "/api/v1/users//app-password", ok, "", 400, `{"success":false,"error":"Invalid user_id"}`},
		{"encoded slash", post, "/api/v1/users/a%2Fb/app-password", ok, "", 400, `{"success":false,"error":"Invalid user_id"}`},
		{"two segments", post, "/api/v1/users/a/b/app-password", ok, "", 400, `{"success":false,"error":"Invalid user_id"}`},
		{"dot dot", post, "/api/v1/users/%2E%2E/app-password", ok, "", 400, `{"success":false,"error":"Invalid user_id"}`},
		{"control byte", post, "/api/v1/users/a%00b/app-password", ok, "", 400, `{"success":false,"error":"Invalid user_id"}`},
		{"unicode", post, "/api/v1/users/%C3%A9lise/app-password", ok, "", 400, `{"success":false,"error":"Invalid user_id"}`},
		{"too long", post, "/api/v1/users/" + strings.Repeat("a", 65) + "/app-password", ok, "", 400, `{"success":false,"error":"Invalid user_id"}`},
		{"no auth", post, "/api/v1/users/alice/app-password", "", "", 401, `{"success":false,"error":"Missing BasicAuth credentials"}`},
		{"bearer", post, "/api/v1/users/alice/app-password", "raw:Bearer abc", "", 401, `{"success":false,"error":"Missing BasicAuth credentials"}`},
		{"bad base64", post, "/api/v1/users/alice/app-password", "raw:Basic !!!", "", 401, `{"success":false,"error":"Invalid BasicAuth format"}`},
		{"no colon", post, "/api/v1/users/alice/app-password", "raw:Basic YWxpY2U=", "", 401, `{"success":false,"error":"Invalid BasicAuth format"}`},
		{"not utf-8", post, "/api/v1/users/alice/app-password", "raw:Basic /w==", "", 401, `{"success":false,"error":"Invalid BasicAuth format"}`},
		{"other user", post, "/api/v1/users/alice/app-password", "bob:" + alicePW, "", 403, `{"success":false,"error":"Username does not match path user_id"}`},
		{"short password", post, "/api/v1/users/alice/app-password", "alice:short", "", 400, `{"success":false,"error":"Invalid app password format"}`},
		{"bad json", post, "/api/v1/users/alice/app-password", ok, `{"username":`, 400, `{"success":false,"error":"Invalid JSON body"}`},
		{"array body", post, "/api/v1/users/alice/app-password", ok, `["x"]`, 400, `{"success":false,"error":"Request body must be a JSON object"}`},
		{"scopes string", post, "/api/v1/users/alice/app-password", ok, `{"scopes":"notes.read"}`, 400, `{"success":false,"error":"scopes must be a list of strings"}`},
		{"scopes numbers", post, "/api/v1/users/alice/app-password", ok, `{"scopes":[1]}`, 400, `{"success":false,"error":"scopes must be a list of strings"}`},
		{"username number", post, "/api/v1/users/alice/app-password", ok, `{"username":5}`, 400, `{"success":false,"error":"username must be a string of at most 256 characters"}`},
		{"too large", post, "/api/v1/users/alice/app-password", ok, `{"username":"` + strings.Repeat("a", 70000) + `"}`, 413, `{"success":false,"error":"Request body too large"}`},
		{"wrong password", post, "/api/v1/users/alice/app-password", "alice:" + alicePW2, "", 401, `{"success":false,"error":"Invalid app password"}`},
		{"wrong login", post, "/api/v1/users/alice/app-password", ok, `{"username":"mallory"}`, 401, `{"success":false,"error":"Invalid app password"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := e.call(c.method, c.path, c.auth, c.body)
			a.expect(t, c.status, c.want)
			if c.status == 401 && a.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// The scopes error also lists what is valid.
	a := e.call(post, "/api/v1/users/alice/app-password", ok, `{"scopes":["notes.read","root","x.y"]}`)
	var body struct {
		Error       string   `json:"error"`
		ValidScopes []string `json:"valid_scopes"`
	}
	_ = json.Unmarshal([]byte(a.body), &body)
	if a.status != 400 || body.Error != "Invalid scopes: root, x.y" || !reflect.DeepEqual(body.ValidScopes, newTestScopes(t)) {
		t.Fatalf("invalid scopes: %d %s", a.status, a.body)
	}
	if e.stored("alice") != nil {
		t.Fatal("a failed POST wrote to Vault")
	}
}

func TestNextcloudAnswers(t *testing.T) {
	// A limit of 3: the two counted failures below and the final success
	// fit; were the four outages counted too, the success would be 429.
	e := newEnv(t, "rate_limit 3 1h")
	e.nc.AddUser("alice", "", alicePW)
	post := func(pw string) answer { return e.call("POST", "/api/v1/users/alice/app-password", "alice:"+pw, "") }

	cases := []struct {
		name     string
		fault    fakenextcloud.Fault
		password string
		status   int
		want     string
	}{
		{"OCS v1-style 200 with 997", fakenextcloud.Fault{V1Answers: true}, alicePW2, 401, `{"success":false,"error":"Invalid app password"}`},
		{"other user's token", fakenextcloud.Fault{WrongID: "mallory"}, alicePW, 403, `{"success":false,"error":"User ID mismatch"}`},
		{"server error", fakenextcloud.Fault{Status: 500}, alicePW, 502, `{"success":false,"error":"Nextcloud returned a server error"}`},
		{"maintenance 503", fakenextcloud.Fault{Status: 503}, alicePW, 502, `{"success":false,"error":"Nextcloud returned a server error"}`},
		{"HTML page", fakenextcloud.Fault{HTML: true}, alicePW, 502, `{"success":false,"error":"Unexpected response from Nextcloud"}`},
		{"redirect elsewhere", fakenextcloud.Fault{RedirectTo: "http://127.0.0.1:1/steal"}, alicePW, 502, `{"success":false,"error":"Nextcloud returned a server error"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.nc.SetFault(c.fault)
			post(c.password).expect(t, c.status, c.want)
		})
	}
	e.nc.SetFault(fakenextcloud.Fault{})
	post(alicePW).expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
}

func TestNextcloudUnreachableAndTimeout(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	// A timeout shorter than the fake's delay.
	cf := strings.Replace(e.caddyfile(""), "nextcloud "+e.nc.URL, "nextcloud "+e.nc.URL+" {\n\t\t\ttimeout 200ms\n\t\t}", 1)
	e.load(cf)
	e.nc.SetFault(fakenextcloud.Fault{Delay: time.Minute})
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").
		expect(t, 502, `{"success":false,"error":"Failed to validate credentials"}`)

	e.nc.Close()
	for range 6 { // outages are not counted: no 429 after 5
		e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").
			expect(t, 502, `{"success":false,"error":"Failed to validate credentials"}`)
	}
}

func TestVaultUnavailable(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	e.vaultAddr = "http://127.0.0.1:1"
	e.load(e.caddyfile(""))
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/users/alice/app-password"},
		{"GET", "/api/v1/users/alice/app-password"},
		{"DELETE", "/api/v1/users/alice/app-password"},
		{"GET", "/api/v1/users/alice/access"},
	} {
		e.call(c.method, c.path, "alice:"+alicePW, "").expect(t, 503, `{"success":false,"error":"Secret storage unavailable"}`)
	}
	// The reason is in the log, the secret is not.
	var found bool
	for _, l := range e.logLines() {
		if l["outcome"] == "storage_unavailable" && strings.Contains(l["cause"].(string), "connection refused") {
			found = true
		}
	}
	if !found {
		t.Fatal("no log line gives the storage error's cause")
	}
}

func TestStatusRoute(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	get := func(pw string) answer { return e.call("GET", "/api/v1/users/alice/app-password", "alice:"+pw, "") }

	get(alicePW).expect(t, 200, `{"success":true,"user_id":"alice","has_app_password":false}`)
	get(alicePW2).expect(t, 401, `{"success":false,"error":"Invalid app password"}`)

	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	calls := e.nc.Calls()
	get(alicePW).expect(t, 200, `{"success":true,"user_id":"alice","has_app_password":true}`)
	if e.nc.Calls() != calls {
		t.Fatal("the stored password did not spare the Nextcloud call")
	}
}

func TestDeleteAfterRevocationInNextcloud(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	del := func() answer { return e.call("DELETE", "/api/v1/users/alice/app-password", "alice:"+alicePW, "") }

	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.nc.Revoke("alice", alicePW) // Astrolabe deletes the token first
	del().expect(t, 200, `{"success":true,"message":"App password deleted for alice"}`)
	if e.stored("alice") != nil || e.readableVersions("alice") != nil {
		t.Fatal("secret still in Vault after DELETE")
	}
	// The secret is gone and Nextcloud no longer knows the password.
	del().expect(t, 401, `{"success":false,"error":"Invalid credentials"}`)

	e.nc.AddUser("alice", "", alicePW)
	del().expect(t, 200, `{"success":true,"message":"No app password found to delete"}`)
}

func TestAccessRoute(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "alice@example.com")
	e.nc.SetLoginPassword("alice", alicePW) // valid as "alice" and as the e-mail
	access := func() answer { return e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "") }

	access().expect(t, 200, `{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, `{"username":"alice@example.com","scopes":["notes.read"]}`).
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":["notes.read"]}`)
	access().expect(t, 200, `{"success":true,"user_id":"alice","provisioned":true,"scopes":["notes.read"],"username":"alice@example.com","created_at":1800000000,"updated_at":1800000000}`)
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW2, "").expect(t, 401, `{"success":false,"error":"Invalid credentials"}`)
}

func TestPatchScopes(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	patch := func(body string) answer { return e.call("PATCH", "/api/v1/users/alice/scopes", "alice:"+alicePW, body) }

	patch(`{"scopes":["notes.read"]}`).expect(t, 404, `{"success":false,"error":"No app password provisioned for this user"}`)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)

	patch("").expect(t, 400, `{"success":false,"error":"Request body must be a JSON object"}`)
	patch(`{}`).expect(t, 400, `{"success":false,"error":"scopes must be a list of strings"}`)
	patch(`{"scopes":null}`).expect(t, 400, `{"success":false,"error":"scopes must be a list of strings"}`)
	if a := patch(`{"scopes":["nope"]}`); a.status != 400 || !strings.HasPrefix(a.body, `{"success":false,"error":"Invalid scopes: nope","valid_scopes":["calendar.read",`) {
		t.Fatalf("got %d %s", a.status, a.body)
	}

	e.clock.Advance(time.Minute)
	patch(`{"scopes":["deck.read","deck.write"]}`).expect(t, 200, `{"success":true,"message":"Scopes updated successfully","scopes":["deck.read","deck.write"]}`)
	got := e.stored("alice")
	if !reflect.DeepEqual(got["scopes"], []any{"deck.read", "deck.write"}) || got["app_password"] != alicePW ||
		got["created_at"] != json.Number("1800000000") || got["updated_at"] != json.Number("1800000060") {
		t.Fatalf("Vault holds %#v", got)
	}
	if v := e.readableVersions("alice"); !reflect.DeepEqual(v, []int{2}) {
		t.Fatalf("readable versions %v, want only [2]", v)
	}
	patch(`{"scopes":[]}`).expect(t, 200, `{"success":true,"message":"Scopes updated successfully","scopes":[]}`)
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, "")
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", "/api/v1/users/alice/app-password", "GET, POST, DELETE"},
		{"PATCH", "/api/v1/users/alice/app-password", "GET, POST, DELETE"},
		{"POST", "/api/v1/users/alice/access", "GET"},
		{"GET", "/api/v1/users/alice/scopes", "PATCH"},
		{"DELETE", "/api/v1/scopes", "GET"},
	} {
		a := e.call(c.method, c.path, "", "")
		a.expect(t, 405, `{"success":false,"error":"Method not allowed"}`)
		if a.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow = %q, want %q", c.method, c.path, a.header.Get("Allow"), c.allow)
		}
	}
}

func TestRateLimitThroughCaddy(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	bad := func() answer { return e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "") }

	// A successful GET does not count; failures do.
	e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"user_id":"alice","has_app_password":false}`)
	for range 5 {
		bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	e.clock.Advance(10 * time.Minute)
	a := bad()
	a.expect(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3000 seconds."}`)
	if a.header.Get("Retry-After") != "3000" {
		t.Fatalf("Retry-After = %q", a.header.Get("Retry-After"))
	}
	// The limit is per user id, without regard to case.
	e.call("POST", "/api/v1/users/ALICE/app-password", "ALICE:"+alicePW2, "").expect(t, 429,
		`{"success":false,"error":"Rate limit exceeded. Try again in 3000 seconds."}`)
	// Wrong BasicAuth does not reach the limiter and is not answered 429.
	e.call("POST", "/api/v1/users/alice/app-password", "", "").expect(t, 401, `{"success":false,"error":"Missing BasicAuth credentials"}`)

	e.clock.Advance(50 * time.Minute)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
}

func TestSuccessfulProvisionsCount(t *testing.T) {
	e := newEnv(t, "rate_limit 2 1h")
	e.nc.AddUser("alice", "", alicePW)
	post := func() answer { return e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "") }
	post().expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	post().expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	post().expect(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`)
	// GET with the stored password is still answered: successes of other
	// routes are not counted, but the limit applies to every user route.
	e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 429,
		`{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`)
}

func TestRateLimitSurvivesReload(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	bad := func() answer { return e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "") }
	for range 3 {
		bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	// A changed option, posted to the admin API as `caddy reload` does.
	e.reload(e.caddyfile("password_format strict"))
	for range 2 {
		bad().expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	bad().expect(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`)
	// The reloaded option is in force.
	e.call("POST", "/api/v1/users/bob/app-password", "bob:"+adminToken, "").expect(t, 400,
		`{"success":false,"error":"Invalid app password format"}`)
}

func TestLogLines(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW2, "").expect(t, 401,
		`{"success":false,"error":"Invalid credentials"}`)

	lines := e.logLines()
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2: %v", len(lines), lines)
	}
	for i, want := range []map[string]any{
		{"level": "info", "route": "app-password", "method": "POST", "user_id": "alice", "outcome": "ok", "status": 200.0, "client_ip": "127.0.0.1"},
		{"level": "warn", "route": "access", "method": "GET", "user_id": "alice", "outcome": "invalid_password", "status": 401.0, "client_ip": "127.0.0.1"},
	} {
		for k, v := range want {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, lines[i][k], v)
			}
		}
		if _, ok := lines[i]["latency"].(float64); !ok {
			t.Errorf("line %d has no latency", i)
		}
	}
	assertNoSecrets(t, e.logFile, alicePW, alicePW2)
}

func TestPassThrough(t *testing.T) {
	e := newEnv(t, "")
	req, _ := http.NewRequest("PUT", e.base+"/mcp/x?a=1&b=%2F", strings.NewReader("hello body"))
	req.Header.Set("X-Custom", "kept")
	req.Header.Set("Authorization", "Bearer upstream-token")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Backend") != "mcp" {
		t.Fatalf("backend answer not passed back: %d %v", resp.StatusCode, resp.Header)
	}
	// Paths near the API that are not the API pass too.
	for _, p := range []string{"/api/v1/users/alice/other", "/api/v1/users", "/api/v2/scopes", "/api/v1/scopes/x"} {
		if a := e.call("GET", p, "", ""); a.status != http.StatusTeapot {
			t.Fatalf("%s: %d %s", p, a.status, a.body)
		}
	}
	got := e.backend.requests()
	if len(got) != 5 {
		t.Fatalf("backend saw %d requests", len(got))
	}
	r := got[0]
	if r.method != "PUT" || r.uri != "/mcp/x?a=1&b=%2F" || string(r.body) != "hello body" ||
		r.header.Get("X-Custom") != "kept" || r.header.Get("Authorization") != "Bearer upstream-token" {
		t.Fatalf("backend saw %+v", r)
	}
}

func TestPassThroughStreams(t *testing.T) {
	e := newEnv(t, "")
	resp, err := e.client.Get(e.base + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	next := <-e.backend.sse
	buf := make([]byte, 256)
	for i := range 3 {
		// Release one event, then read it before the next exists: a
		// buffering proxy would block here forever (the test's deadline).
		next <- struct{}{}
		want := "event: progress\ndata: " + string(rune('0'+i)) + "\n\n"
		got := ""
		for len(got) < len(want) {
			n, err := resp.Body.Read(buf)
			got += string(buf[:n])
			if err != nil && len(got) < len(want) {
				t.Fatalf("event %d: %v after %q", i, err, got)
			}
		}
		if got != want {
			t.Fatalf("event %d: %q", i, got)
		}
	}
}
