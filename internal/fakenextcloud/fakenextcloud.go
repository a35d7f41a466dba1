// Package fakenextcloud is an httptest stand-in for the one Nextcloud
// endpoint the module calls: OCS cloud/user, in its v1 and v2 forms, with
// the status codes, headers and JSON shapes Nextcloud answers. It is meant
// to be no kinder than Nextcloud: a test that passes against it should pass
// against a real server.
//
//   - v2 (/ocs/v2.php/cloud/user): success is HTTP 200, meta.statuscode
//     200; bad credentials are HTTP 401 with
//     `WWW-Authenticate: Basic realm="Authorisation Required"`,
//     statuscode 997, message "Unauthorised", data [] (ocs/v1.php catches
//     the LoginException, OC\OCS\ApiHelper::respond answers).
//   - v1 (/ocs/v1.php/cloud/user): success is HTTP 200, statuscode 100;
//     bad credentials are HTTP 200, statuscode 997, data [] — the answer
//     upstream issue #824 met (current Nextcloud's V1Response says 401).
//     The fake keeps the worse one: it is why the module never uses v1.
//   - A request without credentials, or without "OCS-APIRequest: true"
//     (Nextcloud's CSRF check for basic-auth callers), is anonymous: 401,
//     statuscode 997, "Current user is not logged in", no challenge.
//   - Accounts (users.go): an app password is bound to the login name it
//     was created under, compared case-insensitively; the account's own
//     password works under its uid and every login name. data.id is always
//     the uid.
//   - Brute-force protection (throttle.go) is on, as in Nextcloud: each
//     failed login from an address delays that address's next requests,
//     and past the maximum they are answered 429. Delays are recorded, and
//     slept only when a test asks for it.
//
// Faults (status, HTML, delay, redirect, wrong id) are switched on per
// server, or per login name, for the failure tests.
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

	mu    sync.Mutex
	users map[string]*user // by uid
	fault Fault
	// loginFaults are faults for the requests of one login name
	// (lower-cased), where no server-wide fault is set.
	loginFaults map[string]Fault
	// anyUser, when set, is a password every login accepts, as its own
	// uid: for load tests with many users.
	anyUser  string
	throttle throttle

	calls atomic.Int64
	// forwardedFor holds each request's X-Forwarded-For, in order.
	forwardedFor []string
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
	// BareStatus answers this HTTP status with a plain-text body, not
	// OCS: what a proxy in front of Nextcloud answers (its basic_auth's
	// 401, its 502).
	BareStatus int
}

// New starts a fake Nextcloud; it is closed when the test ends.
func New(t interface{ Cleanup(func()) }) *Server {
	s := &Server{users: map[string]*user{}, throttle: newThrottle()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ocs/v2.php/cloud/user", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, 2) })
	mux.HandleFunc("GET /ocs/v1.php/cloud/user", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, 1) })
	mux.HandleFunc("GET /status.php", s.status)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// SetFault switches a fault on; the zero Fault switches it off.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// SetLoginFault switches a fault on for the requests that log in as login
// (compared as Nextcloud compares login names), while no server-wide fault
// is set: one account whose backend is broken. The zero Fault switches it
// off.
func (s *Server) SetLoginFault(login string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loginFaults == nil {
		s.loginFaults = map[string]Fault{}
	}
	if f == (Fault{}) {
		delete(s.loginFaults, mbStrtolower(login))
		return
	}
	s.loginFaults[mbStrtolower(login)] = f
}

// Calls is how many requests reached the server.
func (s *Server) Calls() int64 { return s.calls.Load() }

// ForwardedFor is the X-Forwarded-For header of every OCS request, in the
// order they arrived; "" where a request had none.
func (s *Server) ForwardedFor() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.forwardedFor...)
}

// The OCS failure messages Nextcloud sends.
const (
	msgUnauthorised = "Unauthorised"                  // wrong credentials (LoginException)
	msgNotLoggedIn  = "Current user is not logged in" // no credentials (NotLoggedInException)
	msgMaxDelay     = "Reached maximum delay"         // brute-force maximum (MaxDelayReached)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request, version int) {
	s.calls.Add(1)
	s.mu.Lock()
	s.forwardedFor = append(s.forwardedFor, r.Header.Get("X-Forwarded-For"))
	f := s.fault
	if login, _, ok := r.BasicAuth(); ok && f == (Fault{}) {
		f = s.loginFaults[mbStrtolower(login)]
	}
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
		fail(w, version, http.StatusServiceUnavailable, 503, "Service unavailable")
		return
	case f.RedirectTo != "":
		http.Redirect(w, r, f.RedirectTo, http.StatusFound)
		return
	case f.HTML:
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		_, _ = w.Write([]byte("<!DOCTYPE html><html><body>Maintenance mode</body></html>"))
		return
	case f.Status != 0:
		fail(w, version, f.Status, f.Status, http.StatusText(f.Status))
		return
	case f.BareStatus != 0:
		http.Error(w, http.StatusText(f.BareStatus), f.BareStatus)
		return
	}

	uid, result := s.logIn(r)
	if result == loginOK && r.Header.Get("OCS-APIRequest") != "true" {
		// Logged in, but the CSRF check refuses a basic-auth call
		// without the header: the request goes on as nobody's.
		result = loginMissing
	}
	v1Style := version == 1 || f.V1Answers
	switch result {
	case loginThrottled:
		// ApiHelper::respond(429): HTTP 429 on v2, HTTP 200 on v1.
		httpStatus := http.StatusTooManyRequests
		if version == 1 {
			httpStatus = http.StatusOK
		}
		fail(w, version, httpStatus, http.StatusTooManyRequests, msgMaxDelay)
		return
	case loginFailed, loginMissing:
		msg := msgNotLoggedIn
		if result == loginFailed {
			msg = msgUnauthorised
			w.Header().Set("WWW-Authenticate", `Basic realm="Authorisation Required"`)
		}
		httpStatus := http.StatusUnauthorized
		if v1Style {
			httpStatus = http.StatusOK
		}
		fail(w, version, httpStatus, 997, msg)
		return
	}
	if f.WrongID != "" {
		uid = f.WrongID
	}
	okCode := 200
	if version == 1 {
		okCode = 100
	}
	answer(w, version, http.StatusOK, okCode, "OK", map[string]any{
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

// fail answers an OCS failure with data [].
func fail(w http.ResponseWriter, version, httpStatus, ocsStatus int, message string) {
	answer(w, version, httpStatus, ocsStatus, message, []any{})
}

// answer writes an OCS JSON answer. The meta block differs by version as
// in Nextcloud's V1Response and V2Response: v1 always carries totalitems
// and itemsperpage, v2 only status, statuscode and message.
func answer(w http.ResponseWriter, version, httpStatus, ocsStatus int, message string, data any) {
	status := "failure"
	if ocsStatus == 100 || ocsStatus == 200 {
		status = "ok"
	}
	meta := map[string]any{"status": status, "statuscode": ocsStatus, "message": message}
	if version == 1 {
		meta["totalitems"], meta["itemsperpage"] = "", ""
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(map[string]any{"ocs": map[string]any{"meta": meta, "data": data}})
}
