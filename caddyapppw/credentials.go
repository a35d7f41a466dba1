package caddyapppw

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxUserIDLen is Nextcloud's limit on user ids.
const maxUserIDLen = 64

// validUserID reports whether id is a Nextcloud user id: 1 to 64 characters
// of A-Z a-z 0-9, space and _ . @ - ' (the rule of Nextcloud's
// OC\User\Manager), and not "." or "..". Because "/" and control bytes are
// refused here, an id is also always one safe segment of a Vault path.
func validUserID(id string) bool {
	if id == "" || len(id) > maxUserIDLen || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !userIDByte[id[i]] {
			return false
		}
	}
	return true
}

var userIDByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range " _.@-'" {
		t[c] = true
	}
	return t
}()

// basicAuth returns the credentials of an "Authorization: Basic" header,
// or the API error for a missing or malformed one.
//
// Unlike http.Request.BasicAuth it tells "missing" from "malformed", as
// the API does, and it refuses credentials that are not UTF-8.
func basicAuth(r *http.Request) (user, password string, _ *apiError) {
	auth := r.Header.Get("Authorization")
	const prefix = "Basic "
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return "", "", errMissingAuth
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth[len(prefix):]))
	if err != nil || !utf8.Valid(decoded) {
		return "", "", errBadAuthFormat
	}
	user, password, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", errBadAuthFormat
	}
	return user, password, nil
}

// passwordFormat is the check of step 4 of docs/API.md. Both formats are
// hand-written scans rather than regular expressions: they run on every
// POST before any I/O, and they must not allocate.
type passwordFormat string

const (
	// formatDefault accepts Nextcloud's dashed 5×5 app passwords and the
	// 72-character tokens that admins create: [A-Za-z0-9-]{20,256}.
	formatDefault passwordFormat = "default"
	// formatStrict accepts only the dashed form: [A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){4}.
	formatStrict passwordFormat = "strict"
)

func (f passwordFormat) valid(p string) bool {
	if f == formatStrict {
		if len(p) != 29 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if i%6 == 5 {
				if p[i] != '-' {
					return false
				}
			} else if !isAlnum(p[i]) {
				return false
			}
		}
		return true
	}
	if len(p) < 20 || len(p) > 256 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !isAlnum(p[i]) && p[i] != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// secretsEqual compares two secrets in constant time. Hashing first makes
// the time independent of the lengths too, which subtle alone does not.
//
// It is a variable only so that a test can watch it run for every stored
// password check, against a dummy when there is no record; another test
// reads this declaration to hold it to crypto/subtle.
var secretsEqual = func(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
