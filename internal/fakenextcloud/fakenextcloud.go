// Package fakenextcloud is an httptest stand-in for the one Nextcloud
// endpoint the module calls: OCS cloud/user, in its v1 and v2 forms, with
// the status codes and JSON shapes Nextcloud answers.
//
//   - v2 (/ocs/v2.php/cloud/user): success is HTTP 200, meta.statuscode
//     200; bad credentials are HTTP 401, statuscode 997, data [].
//   - v1 (/ocs/v1.php/cloud/user): success is HTTP 200, statuscode 100;
//     bad credentials are also HTTP 200, statuscode 997, data [] — why the
//     module never uses v1 (upstream issue #824).
//   - A request without "OCS-APIRequest: true" fails Nextcloud's CSRF check
//     for basic-auth callers and is answered like bad credentials.
//   - Users log in by uid or by login name (e.g. an e-mail address); data.id
//     is always the uid.
//
// Faults (status, HTML, delay, redirect, wrong id) are switched on per
// server for the failure tests.
package fakenextcloud

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a fake Nextcloud.
type Server struct {
	*httptest.Server

	mu     sync.Mutex
	users  map[string]*user // by uid
	logins map[string]string
	fault  Fault

	calls atomic.Int64
	// anyUser, when set, is a password every login accepts, as its own
	// uid: for load tests with many users.
	anyUser string
}

type user struct {
	uid       string
	passwords map[string]bool
}

// Fault makes the server misbehave.
type Fault struct {
	Status     int           // answer this HTTP status with an OCS failure body
	HTML       bool          // answer 200 with an HTML page
	Delay      time.Duration // wait this long (or until the client gives up)
	RedirectTo string        // answer 302 to this URL
	WrongID    string        // report this uid on success
	// V1Answers makes the v2 URL answer as v1 does: HTTP 200 with
	// statuscode 997 and data [] for bad credentials.
	V1Answers bool
	// Maintenance is Nextcloud's maintenance mode: status.php says so
	// and OCS answers 503.
	Maintenance bool
}

// New starts a fake Nextcloud; it is closed when the test ends.
func New(t interface{ Cleanup(func()) }) *Server {
	s := &Server{users: map[string]*user{}, logins: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ocs/v2.php/cloud/user", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, 2) })
	mux.HandleFunc("GET /ocs/v1.php/cloud/user", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, 1) })
	mux.HandleFunc("GET /status.php", s.status)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// AddUser creates uid with the app passwords given; loginName, if not
// empty, is a second name it can log in with.
func (s *Server) AddUser(uid, loginName string, appPasswords ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &user{uid: uid, passwords: map[string]bool{}}
	for _, p := range appPasswords {
		u.passwords[p] = true
	}
	s.users[uid] = u
	s.logins[uid] = uid
	if loginName != "" {
		s.logins[loginName] = uid
	}
}

// AcceptAnyUser makes password valid for every login, as that login's uid.
func (s *Server) AcceptAnyUser(password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.anyUser = password
}

// Revoke deletes an app password, as the user's "revoke" button does.
func (s *Server) Revoke(uid, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[uid]; u != nil {
		delete(u.passwords, password)
	}
}

// SetFault switches a fault on; the zero Fault switches it off.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Calls is how many requests reached the server.
func (s *Server) Calls() int64 { return s.calls.Load() }

type meta struct {
	Status       string `json:"status"`
	StatusCode   int    `json:"statuscode"`
	Message      string `json:"message"`
	TotalItems   string `json:"totalitems"`
	ItemsPerPage string `json:"itemsperpage"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, version int) {
	s.calls.Add(1)
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()

	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case f.Maintenance:
		answer(w, http.StatusServiceUnavailable, meta{Status: "failure", StatusCode: 503, Message: "Service unavailable"}, []any{})
		return
	case f.RedirectTo != "":
		http.Redirect(w, r, f.RedirectTo, http.StatusFound)
		return
	case f.HTML:
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		_, _ = w.Write([]byte("<!DOCTYPE html><html><body>Maintenance mode</body></html>"))
		return
	case f.Status != 0:
		answer(w, f.Status, meta{Status: "failure", StatusCode: f.Status, Message: http.StatusText(f.Status)}, []any{})
		return
	}

	uid, ok := s.authenticate(r)
	if !ok {
		status := http.StatusUnauthorized
		if version == 1 || f.V1Answers {
			status = http.StatusOK
		}
		answer(w, status, meta{Status: "failure", StatusCode: 997, Message: "Current user is not logged in"}, []any{})
		return
	}
	if f.WrongID != "" {
		uid = f.WrongID
	}
	okCode := 200
	if version == 1 {
		okCode = 100
	}
	answer(w, http.StatusOK, meta{Status: "ok", StatusCode: okCode, Message: "OK"}, map[string]any{
		"enabled":         true,
		"storageLocation": "/var/www/html/data/" + uid,
		"id":              uid,
		"lastLogin":       time.Now().UnixMilli(),
		"backend":         "Database",
		"subadmin":        []any{},
		"quota":           map[string]any{"free": 1 << 30, "used": 0, "total": 1 << 30, "relative": 0, "quota": -3},
		"email":           nil,
		"displayname":     uid,
		"display-name":    uid,
		"phone":           "",
		"address":         "",
		"website":         "",
		"twitter":         "",
		"groups":          []string{},
		"language":        "en",
		"locale":          "",
		"backendCapabilities": map[string]bool{
			"setDisplayName": true,
			"setPassword":    true,
		},
	})
}

// status is status.php, which Nextcloud answers without credentials.
func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	maintenance := s.fault.Maintenance
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"installed": true, "maintenance": maintenance, "needsDbUpgrade": false,
		"version": "31.0.4.1", "versionstring": "31.0.4", "edition": "",
		"productname": "Nextcloud", "extendedSupport": false,
	})
}

func (s *Server) authenticate(r *http.Request) (string, bool) {
	if r.Header.Get("OCS-APIRequest") != "true" {
		return "", false
	}
	login, password, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.anyUser != "" && password == s.anyUser {
		return login, true
	}
	u := s.users[s.logins[login]]
	if u == nil || !u.passwords[password] {
		return "", false
	}
	return u.uid, true
}

func answer(w http.ResponseWriter, status int, m meta, data any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"ocs": map[string]any{"meta": m, "data": data}})
}
