package caddyapppw

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"unicode/utf8"
)

const (
	// maxBodyBytes is the largest POST or PATCH body the API reads.
	maxBodyBytes = 64 << 10
	// maxUsernameLen bounds the Nextcloud login name a POST may carry.
	maxUsernameLen = 256
)

// requestBody is what a POST or PATCH body may say. Absent and null are
// the same: username nil means "log in as the user id"; scopes nil means
// "no restriction".
type requestBody struct {
	username  *string
	scopes    []string
	hasScopes bool // "scopes" present and not null
}

// readBody reads at most maxBodyBytes of r's body. A larger body is refused
// from its Content-Length when it has one, without reading it at all.
func readBody(r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > maxBodyBytes {
		return nil, errBodyTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, errInvalidJSON.withCause(err)
	}
	if len(data) > maxBodyBytes {
		return nil, errBodyTooLarge
	}
	return data, nil
}

// preread reads r's body, as much of it as readBody would, into memory
// before the request's attempt is reserved, and puts it back as r.Body for
// readBody to read at its place in the order of checks, with any read
// error after it. A reservation on Redis counts only for its lease, the
// time a request can take once reserved; a body dripped in after the
// reservation would outlast that lease, and the attempt would stop
// counting while it still ran. Read first, the body's pace costs no
// attempt. Answers keep their order: a blocked request is still 429
// before its body is judged. A body whose Content-Length is too large is
// left unread, as readBody refuses it without reading.
func preread(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength > maxBodyBytes {
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	var rd io.Reader = bytes.NewReader(data)
	if err != nil {
		rd = io.MultiReader(rd, errReader{err})
	}
	r.Body = io.NopCloser(rd)
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// parseBody validates a POST or PATCH body against the supported scopes.
// An empty body is valid and says nothing (the legacy POST).
func parseBody(data []byte, supported scopeSet) (requestBody, *apiError) {
	var out requestBody
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return out, nil
	}
	if !json.Valid(data) {
		return out, errInvalidJSON
	}
	var fields map[string]json.RawMessage
	if data[0] != '{' || json.Unmarshal(data, &fields) != nil {
		return out, errBodyNotObject
	}

	if raw, ok := fields["username"]; ok && !isNull(raw) {
		var name string
		if err := json.Unmarshal(raw, &name); err != nil || utf8.RuneCountInString(name) > maxUsernameLen || name == "" {
			return out, errUsernameInvalid
		}
		out.username = &name
	}

	if raw, ok := fields["scopes"]; ok && !isNull(raw) {
		// Pointers tell a null element, which encoding/json would turn
		// into "" silently, from a string.
		var elems []*string
		if err := json.Unmarshal(raw, &elems); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return out, errScopesNotList
			}
			return out, errInvalidJSON
		}
		scopes := make([]string, len(elems))
		for i, e := range elems {
			if e == nil {
				return out, errScopesNotList
			}
			scopes[i] = *e
		}
		scopes = dedupe(scopes)
		if bad := supported.unknown(scopes); len(bad) > 0 {
			return out, errInvalidScopes(bad, supported.sorted)
		}
		out.scopes, out.hasScopes = scopes, true
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// dedupe drops repeated scopes, keeping the first of each. The result is
// never nil, so an empty list stays "[]" and does not turn into null.
func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	seen := make(map[string]struct{}, len(in))
	for _, s := range in {
		if _, ok := seen[s]; !ok {
			seen[s] = struct{}{}
			out = append(out, s)
		}
	}
	return out
}
