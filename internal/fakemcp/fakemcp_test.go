package fakemcp

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

const (
	alicePW = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"
	adaPW   = "Zyxwv-Utsrq-Ponml-Kjihg-Fedcb"
	bobPW   = "Bbbbb-Bbbbb-Bbbbb-Bbbbb-Bbbbb"
)

// clock is a settable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

var t0 = time.Unix(1_800_000_000, 0)

// setup starts a fake Nextcloud with alice, bob and ada (whose app
// password was created under the login name ada@example.com), and the
// double in front of it on a clock standing at t0.
func setup(t *testing.T) (*Server, *clock) {
	nc := fakenextcloud.New(t)
	nc.AddUser("alice", "", alicePW)
	nc.AddUser("bob", "", bobPW)
	nc.AddUser("ada", "ada@example.com", adaPW)
	return withNextcloud(t, nc.URL)
}

func withNextcloud(t *testing.T, url string) (*Server, *clock) {
	s := New(t, url)
	c := &clock{now: t0}
	s.SetClock(c.Now)
	return s, c
}

type reply struct {
	status int
	header http.Header
	body   string
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// call sends one request; auth is the whole Authorization value.
func call(t *testing.T, s *Server, method, path, auth, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func (r reply) is(t *testing.T, status int, body string) {
	t.Helper()
	if r.status != status || r.body != body {
		t.Fatalf("got %d %s\nwant %d %s", r.status, r.body, status, body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
}

const appPassword = "/api/v1/users/alice/app-password"

func TestBasicAuthFailuresAreNotCounted(t *testing.T) {
	s, _ := setup(t)
	cases := []struct {
		name, auth string
		status     int
		text       string
	}{
		{"none", "", 401, "Missing BasicAuth credentials"},
		{"bearer", "Bearer " + alicePW, 401, "Missing BasicAuth credentials"},
		{"lower-case scheme", "basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+alicePW)), 401, "Missing BasicAuth credentials"},
		{"bad padding", "Basic YWxpY2U6eA", 401, "Invalid BasicAuth format"},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), 401, "Invalid BasicAuth format"},
		{"not UTF-8", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:\xff\xfe")), 401, "Invalid BasicAuth format"},
		{"other user", basic("bob", bobPW), 403, "Username does not match path user_id"},
		{"case differs", basic("Alice", alicePW), 403, "Username does not match path user_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range Limit + 1 {
				for _, m := range []string{"POST", "GET", "DELETE"} {
					call(t, s, m, appPassword, c.auth, "").is(t, c.status, `{"success":false,"error":"`+c.text+`"}`)
				}
			}
		})
	}
	if n := s.Counted("alice"); n != 0 {
		t.Fatalf("%d attempts counted for BasicAuth failures", n)
	}
	call(t, s, "POST", appPassword, basic("alice", alicePW), "").
		is(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
}

// A Python-style decoder skips characters outside the base64 alphabet.
func TestBasicAuthSkipsNonAlphabet(t *testing.T) {
	s, _ := setup(t)
	enc := base64.StdEncoding.EncodeToString([]byte("alice:" + alicePW))
	call(t, s, "GET", appPassword, "Basic "+enc[:8]+"\t*"+enc[8:], "").
		is(t, 200, `{"success":true,"user_id":"alice","has_app_password":false}`)
}

func TestLimiterAfterBasicAuthBeforeFormatAndNextcloud(t *testing.T) {
	s, c := setup(t)
	// Five format failures, one a second: each is counted.
	for i := range Limit {
		c.Set(t0.Add(time.Duration(i) * time.Second))
		call(t, s, "POST", appPassword, basic("alice", "short"), "").
			is(t, 400, `{"success":false,"error":"Invalid app password format"}`)
	}
	c.Set(t0.Add(10*time.Second + 500*time.Millisecond))
	// The sixth is refused before its (right) password is looked at:
	// int(t0 + 3600 − (t0 + 10.5)) = 3589.
	r := call(t, s, "POST", appPassword, basic("alice", alicePW), "")
	r.is(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3589 seconds."}`)
	if ra := r.header.Get("Retry-After"); ra != "3589" {
		t.Fatalf("Retry-After %q", ra)
	}
	// Every route shares the limit.
	call(t, s, "GET", "/api/v1/users/alice/access", basic("alice", alicePW), "").
		is(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3589 seconds."}`)
	// BasicAuth is checked first.
	call(t, s, "POST", appPassword, "", "").is(t, 401, `{"success":false,"error":"Missing BasicAuth credentials"}`)
	// Other users have their own budget.
	call(t, s, "GET", "/api/v1/users/bob/app-password", basic("bob", bobPW), "").
		is(t, 200, `{"success":true,"user_id":"bob","has_app_password":false}`)
	if s.Len() != 0 {
		t.Fatal("a refused POST stored a row")
	}
	// One hour after the first, it has left the window; four remain.
	c.Set(t0.Add(Window))
	call(t, s, "POST", appPassword, basic("alice", alicePW), "").
		is(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	if n := s.Counted("alice"); n != Limit {
		t.Fatalf("counted %d, want %d (four failures and the success)", n, Limit)
	}
	call(t, s, "POST", appPassword, basic("alice", alicePW), "").
		is(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 1 seconds."}`)
}

func TestSuccessfulProvisionsAreCounted(t *testing.T) {
	s, c := setup(t)
	for i := range Limit {
		c.Set(t0.Add(time.Duration(i) * time.Minute))
		call(t, s, "POST", appPassword, basic("alice", alicePW), "").
			is(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	}
	call(t, s, "POST", appPassword, basic("alice", alicePW), "").
		is(t, 429, `{"success":false,"error":"Rate limit exceeded. Try again in 3360 seconds."}`)
	// Reads with the right password are not counted...
	c.Set(t0.Add(Window))
	for range 2 * Limit {
		call(t, s, "GET", appPassword, basic("alice", alicePW), "").
			is(t, 200, `{"success":true,"user_id":"alice","has_app_password":true}`)
	}
	// ...nor are deletions and scope changes that succeed.
	call(t, s, "PATCH", "/api/v1/users/alice/scopes", basic("alice", alicePW), `{"scopes":["notes.read"]}`).
		is(t, 200, `{"success":true,"user_id":"alice","scopes":["notes.read"],"message":"Scopes updated successfully"}`)
	call(t, s, "DELETE", appPassword, basic("alice", alicePW), "").
		is(t, 200, `{"success":true,"message":"App password deleted for alice"}`)
	if n := s.Counted("alice"); n != Limit-1 {
		t.Fatalf("counted %d", n)
	}
}

func TestNextcloudRefusalTexts(t *testing.T) {
	s, _ := setup(t)
	const wrong = "Wrong-Wrong-Wrong-Wrong-Wrong"
	routes := []struct{ method, path, body, text string }{
		{"POST", appPassword, "", "Invalid app password"},
		{"GET", appPassword, "", "Invalid app password"},
		{"DELETE", appPassword, "", "Invalid credentials"},
		{"GET", "/api/v1/users/alice/access", "", "Invalid credentials"},
		{"PATCH", "/api/v1/users/alice/scopes", `{"scopes":[]}`, "Invalid credentials"},
	}
	for i, rt := range routes {
		call(t, s, rt.method, rt.path, basic("alice", wrong), rt.body).
			is(t, 401, `{"success":false,"error":"`+rt.text+`"}`)
		if n := s.Counted("alice"); n != i+1 {
			t.Fatalf("%s %s: counted %d, want %d", rt.method, rt.path, n, i+1)
		}
	}
}

func TestLoginNameFromBody(t *testing.T) {
	s, c := setup(t)
	// ada's app password opens Nextcloud only under ada@example.com.
	call(t, s, "POST", "/api/v1/users/ada/app-password", basic("ada", adaPW), "").
		is(t, 401, `{"success":false,"error":"Invalid app password"}`)
	body := `{"username": "ada@example.com", "scopes": ["notes.read", "files.write"]}`
	call(t, s, "POST", "/api/v1/users/ada/app-password", basic("ada", adaPW), body).
		is(t, 200, `{"success":true,"message":"App password stored for ada","scopes":["notes.read","files.write"]}`)
	got, ok := s.Get("ada")
	want := Record{Password: adaPW, Username: "ada@example.com", Scopes: []string{"notes.read", "files.write"}, CreatedAt: t0.Unix(), UpdatedAt: t0.Unix()}
	if !ok || !same(got, want) {
		t.Fatalf("row %+v, want %+v", got, want)
	}
	// An upsert keeps created_at; scopes and username follow the body.
	c.Set(t0.Add(time.Minute))
	call(t, s, "POST", "/api/v1/users/ada/app-password", basic("ada", adaPW), `{"username":"ada@example.com","scopes":[]}`).
		is(t, 200, `{"success":true,"message":"App password stored for ada","scopes":[]}`)
	got, _ = s.Get("ada")
	want = Record{Password: adaPW, Username: "ada@example.com", Scopes: []string{}, CreatedAt: t0.Unix(), UpdatedAt: t0.Unix() + 60}
	if !same(got, want) || got.Scopes == nil {
		t.Fatalf("row %+v, want %+v", got, want)
	}
	call(t, s, "GET", "/api/v1/users/ada/access", basic("ada", adaPW), `{"username":"ada@example.com"}`).
		is(t, 200, `{"success":true,"user_id":"ada","provisioned":true,"scopes":[],"username":"ada@example.com","created_at":1800000000,"updated_at":1800000060}`)
}

func same(a, b Record) bool {
	return a.Password == b.Password && a.Username == b.Username && slices.Equal(a.Scopes, b.Scopes) &&
		a.CreatedAt == b.CreatedAt && a.UpdatedAt == b.UpdatedAt
}

// The attack the uid check stops: bob's path and name, alice's password
// and login name.
func TestUserIDMismatch(t *testing.T) {
	s, _ := setup(t)
	call(t, s, "POST", "/api/v1/users/bob/app-password", basic("bob", alicePW), `{"username":"alice"}`).
		is(t, 403, `{"success":false,"error":"User ID mismatch"}`)
	if s.Len() != 0 || s.Counted("bob") != 1 {
		t.Fatalf("rows %d, counted %d", s.Len(), s.Counted("bob"))
	}
}

// stubNextcloud answers every OCS request with answer.
func stubNextcloud(t *testing.T, answer http.HandlerFunc) *httptest.Server {
	srv := httptest.NewServer(answer)
	t.Cleanup(srv.Close)
	return srv
}

func TestNextcloudFailures(t *testing.T) {
	ocs := func(httpStatus, statuscode int, data string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/ocs/v2.php/cloud/user" || r.URL.RawQuery != "format=json" || r.Header.Get("OCS-APIRequest") != "true" {
				t.Errorf("Nextcloud asked %s?%s", r.URL.Path, r.URL.RawQuery)
			}
			if u, p, _ := r.BasicAuth(); u != "alice" || p != alicePW {
				t.Errorf("Nextcloud asked as %q", u)
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(httpStatus)
			_, _ = io.WriteString(w, `{"ocs":{"meta":{"status":"x","statuscode":`+strconv.Itoa(statuscode)+`,"message":""},"data":`+data+`}}`)
		}
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	cases := []struct {
		name   string
		url    string
		status int
		text   string
	}{
		{"server error", stubNextcloud(t, ocs(500, 500, "[]")).URL, 502, "Nextcloud returned a server error"},
		{"maintenance", stubNextcloud(t, ocs(503, 503, "[]")).URL, 502, "Nextcloud returned a server error"},
		{"throttled", stubNextcloud(t, ocs(429, 429, "[]")).URL, 502, "Nextcloud returned a server error"},
		{"redirect", stubNextcloud(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/login", http.StatusFound)
		}).URL, 502, "Nextcloud returned a server error"},
		{"forbidden", stubNextcloud(t, ocs(403, 997, "[]")).URL, 401, "Invalid app password"},
		{"html", stubNextcloud(t, func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "<html>maintenance</html>")
		}).URL, 502, "Unexpected response from Nextcloud"},
		{"unreachable", closed.URL, 502, "Failed to validate credentials"},
		{"v1-style 997 on 200", stubNextcloud(t, ocs(200, 997, "[]")).URL, 401, "Invalid app password"},
		{"no id", stubNextcloud(t, ocs(200, 200, `{"id":""}`)).URL, 401, "Invalid app password"},
		{"other uid", stubNextcloud(t, ocs(200, 200, `{"id":"mallory"}`)).URL, 403, "User ID mismatch"},
		{"id not a string", stubNextcloud(t, ocs(200, 200, `{"id":7}`)).URL, 403, "User ID mismatch"},
		{"v1 success code", stubNextcloud(t, ocs(200, 100, `{"id":"alice"}`)).URL, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := withNextcloud(t, c.url)
			r := call(t, s, "POST", appPassword, basic("alice", alicePW), "")
			if c.status == 200 {
				r.is(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
				return
			}
			r.is(t, c.status, `{"success":false,"error":"`+c.text+`"}`)
			if s.Len() != 0 || s.Counted("alice") != 1 {
				t.Fatalf("rows %d, counted %d", s.Len(), s.Counted("alice"))
			}
		})
	}
}

func TestReadAndChangeRoutes(t *testing.T) {
	s, c := setup(t)
	auth := basic("alice", alicePW)
	call(t, s, "GET", "/api/v1/users/alice/access", auth, "").
		is(t, 200, `{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`)
	call(t, s, "PATCH", "/api/v1/users/alice/scopes", auth, `{"scopes":["notes.read"]}`).
		is(t, 404, `{"success":false,"error":"No app password provisioned for this user"}`)
	call(t, s, "DELETE", appPassword, auth, "").
		is(t, 200, `{"success":true,"message":"No app password found to delete"}`)

	call(t, s, "POST", appPassword, auth, `{"scopes":null}`).
		is(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	call(t, s, "GET", "/api/v1/users/alice/access", auth, "").
		is(t, 200, `{"success":true,"user_id":"alice","provisioned":true,"scopes":null,"username":null,"created_at":1800000000,"updated_at":1800000000}`)

	for body, want := range map[string]reply{
		`not json`:                              {400, nil, `{"success":false,"error":"Invalid JSON body"}`},
		`{}`:                                    {400, nil, `{"success":false,"error":"scopes must be a list of strings"}`},
		`{"scopes":"notes.read"}`:               {400, nil, `{"success":false,"error":"scopes must be a list of strings"}`},
		`{"scopes":["notes.read","bogus","x"]}`: {400, nil, `{"success":false,"error":"Invalid scopes: bogus, x","valid_scopes":["calendar.read","calendar.write","collectives.read","collectives.write","contacts.read","contacts.write","cookbook.read","cookbook.write","deck.read","deck.write","files.read","files.write","mail.read","mail.send","mail.write","news.read","news.write","notes.read","notes.write","semantic.read","sharing.read","sharing.write","tables.read","tables.write","talk.read","talk.write","todo.read","todo.write"]}`},
	} {
		call(t, s, "PATCH", "/api/v1/users/alice/scopes", auth, body).is(t, want.status, want.body)
	}
	c.Set(t0.Add(time.Minute))
	call(t, s, "PATCH", "/api/v1/users/alice/scopes", auth, `{"scopes":["notes.read","calendar.write"]}`).
		is(t, 200, `{"success":true,"user_id":"alice","scopes":["notes.read","calendar.write"],"message":"Scopes updated successfully"}`)
	got, _ := s.Get("alice")
	if want := (Record{Password: alicePW, Scopes: []string{"notes.read", "calendar.write"}, CreatedAt: t0.Unix(), UpdatedAt: t0.Unix() + 60}); !same(got, want) {
		t.Fatalf("row %+v", got)
	}
	call(t, s, "DELETE", appPassword, auth, "").
		is(t, 200, `{"success":true,"message":"App password deleted for alice"}`)
	if s.Len() != 0 {
		t.Fatal("row kept")
	}
	call(t, s, "GET", appPassword, auth, "").
		is(t, 200, `{"success":true,"user_id":"alice","has_app_password":false}`)
}

// DELETE needs a password Nextcloud still accepts: a revoked one leaves
// the row, as the MCP server's own sweep is what removes it.
func TestDeleteWithRevokedPassword(t *testing.T) {
	nc := fakenextcloud.New(t)
	nc.AddUser("alice", "", alicePW)
	s, _ := withNextcloud(t, nc.URL)
	call(t, s, "POST", appPassword, basic("alice", alicePW), "").
		is(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	nc.AddUser("alice", "", "Other-Other-Other-Other-Other") // alice's old password is gone
	call(t, s, "DELETE", appPassword, basic("alice", alicePW), "").
		is(t, 401, `{"success":false,"error":"Invalid credentials"}`)
	if _, ok := s.Get("alice"); !ok {
		t.Fatal("row deleted with a password Nextcloud refuses")
	}
}

func TestOtherMethodsAndPaths(t *testing.T) {
	s, _ := setup(t)
	r := call(t, s, "PUT", appPassword, basic("alice", alicePW), "")
	if r.status != 405 || !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Fatalf("PUT: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	if r := call(t, s, "GET", "/api/v1/users/a%2Fb/app-password", basic("a/b", alicePW), ""); r.status != 404 {
		t.Fatalf("encoded slash: %d", r.status)
	}
}

func TestRecordsRequestsAsReceived(t *testing.T) {
	s, _ := setup(t)
	body := `{"username":"alice"}`
	// Chunked: no length known in advance.
	req, _ := http.NewRequest("POST", s.URL+appPassword, io.MultiReader(strings.NewReader(body)))
	req.Header.Set("Authorization", basic("alice", alicePW))
	req.Header.Set("X-Custom", "1")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	call(t, s, "PATCH", "/api/v1/users/alice/scopes?x=1", basic("alice", alicePW), `{"scopes":[]}`)

	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != appPassword || string(r.Body) != body || !r.Chunked || r.ContentLength != -1 ||
		r.Header.Get("Content-Length") != "" || r.Header.Get("X-Custom") != "1" || r.Header.Get("Authorization") != basic("alice", alicePW) {
		t.Fatalf("first: %+v", r)
	}
	r = reqs[1]
	if r.Method != "PATCH" || r.Path != "/api/v1/users/alice/scopes" || r.RawQuery != "x=1" || r.Chunked ||
		r.ContentLength != 13 || r.Header.Get("Content-Length") != "13" || string(r.Body) != `{"scopes":[]}` {
		t.Fatalf("second: %+v", r)
	}
}
