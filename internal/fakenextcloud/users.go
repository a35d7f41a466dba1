package fakenextcloud

import (
	"net/http"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// user is one Nextcloud account.
//
// Nextcloud (OC\User\Session::logClientIn and validateToken) accepts a
// BasicAuth login in two ways, and the fake keeps both apart because the
// module depends on the difference:
//   - an app password (a token) is looked up by the password alone and is
//     then valid only with the login name it was created under — the name
//     the user signed in with when creating it, compared with
//     mb_strtolower (validateTokenLoginName). The same token under another
//     login name of the same account is refused: a token created after
//     signing in as "alice@example.com" does not work as "alice".
//   - the account's own password is checked by the user backend for the
//     uid (case-insensitively) or for another login name of the account
//     (an e-mail address, an LDAP login attribute).
//
// Either way OCS answers with the uid, as written in the account.
type user struct {
	uid        string
	loginNames []string          // other names the account logs in with
	password   string            // the account's own password; "" for none
	tokens     map[string]string // app password → login name it was created under
}

// AddUser creates uid, replacing any account of that uid. loginName, if
// not empty, is another name the account logs in with (an e-mail address,
// an LDAP login), and the app passwords given are created under it, as
// when the user signed in to the web UI with that name to create them;
// with loginName empty they are created under uid. Add more with
// AddAppPassword and SetLoginPassword.
func (s *Server) AddUser(uid, loginName string, appPasswords ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &user{uid: uid, tokens: map[string]string{}}
	createdUnder := uid
	if loginName != "" {
		u.loginNames = append(u.loginNames, loginName)
		createdUnder = loginName
	}
	for _, p := range appPasswords {
		u.tokens[p] = createdUnder
	}
	s.users[uid] = u
}

// AddAppPassword creates an app password for uid while signed in as
// loginName (any spelling: Nextcloud stores the name as typed). uid must
// exist.
func (s *Server) AddAppPassword(uid, loginName, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustUser(uid).tokens[password] = loginName
}

// SetLoginPassword sets the account's own password, valid under the uid
// and every login name of the account, in any case. uid must exist.
func (s *Server) SetLoginPassword(uid, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustUser(uid).password = password
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
		delete(u.tokens, password)
	}
}

func (s *Server) mustUser(uid string) *user {
	u := s.users[uid]
	if u == nil {
		panic("fakenextcloud: no user " + uid)
	}
	return u
}

// loginResult is how Nextcloud's basic-auth login of one request ended.
type loginResult int

const (
	loginOK        loginResult = iota
	loginFailed                // wrong credentials: a LoginException, counted by the throttle
	loginMissing               // no credentials: tryBasicAuthLogin does not run
	loginThrottled             // the address reached the maximum delay: MaxDelayReached
)

// logIn is OC\User\Session::tryBasicAuthLogin with logClientIn: the
// throttle delays the request by the failures of its address (or refuses
// it), then the credentials are checked, and a failure is registered
// against the address.
func (s *Server) logIn(r *http.Request) (string, loginResult) {
	login, password, ok := r.BasicAuth()
	if !ok || login == "" || password == "" {
		return "", loginMissing
	}
	addr := s.remoteAddress(r)
	delay, refused, i := s.throttle.before(addr)
	if refused {
		return "", loginThrottled
	}
	s.throttle.sleep(r.Context(), delay)

	s.mu.Lock()
	uid, ok := s.authenticate(login, password)
	s.mu.Unlock()
	if !ok {
		s.throttle.sleep(r.Context(), s.throttle.failed(addr, i))
		return "", loginFailed
	}
	return uid, loginOK
}

// authenticate finds the account that login and password open. The
// caller holds s.mu.
func (s *Server) authenticate(login, password string) (string, bool) {
	if s.anyUser != "" && password == s.anyUser {
		return login, true
	}
	// An app password: Nextcloud finds the token by the password, then
	// requires the login name it was created under. (Tokens are unique in
	// Nextcloud; tests may give two accounts the same string, so the
	// fake looks for one created under this login name.)
	for _, u := range s.users {
		if name, ok := u.tokens[password]; ok && sameLogin(name, login) {
			return u.uid, true
		}
	}
	// The account's own password, under any of its names.
	for _, u := range s.users {
		if u.password != "" && u.password == password && u.logsInAs(login) {
			return u.uid, true
		}
	}
	return "", false
}

func (u *user) logsInAs(login string) bool {
	if sameLogin(u.uid, login) {
		return true
	}
	for _, n := range u.loginNames {
		if sameLogin(n, login) {
			return true
		}
	}
	return false
}

// sameLogin compares login names as Nextcloud does: mb_strtolower on both.
func sameLogin(a, b string) bool { return mbStrtolower(a) == mbStrtolower(b) }

// mbStrtolower is PHP's mb_strtolower (PHP 8.3, which Nextcloud runs on):
// full Unicode lower-casing, "İ" to "i" and a combining dot, a final
// capital sigma to "ς". strings.ToLower maps rune by rune and does
// neither.
func mbStrtolower(s string) string { return cases.Lower(language.Und).String(s) }
