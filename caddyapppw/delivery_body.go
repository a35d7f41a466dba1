package caddyapppw

import (
	"bytes"
	"encoding/json"
)

// withLogin is the body to hand on: the client's, with the login name the
// module checked the password under in "username" when the client did not
// send one. The MCP server logs in to Nextcloud as the body's username on
// every route, else as the user id: Astrolabe's DELETE has no body and an
// operator's PATCH only scopes, so without this both fail at the MCP
// server for every user whose login name is not the user id (e-mail,
// LDAP, OIDC logins).
//
// Nothing else the client sent changes: the name is put first into the
// client's own bytes. A body that already has "username" (even null), or
// that is not a JSON object, goes as it came; login nil (no login name
// stored, the user id is the login) adds nothing.
func withLogin(body []byte, login *string) []byte {
	if login == nil {
		return body
	}
	name, err := json.Marshal(*login)
	if err != nil {
		return body
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return append(append([]byte(`{"username":`), name...), '}')
	}
	var fields map[string]json.RawMessage
	if trimmed[0] != '{' || json.Unmarshal(trimmed, &fields) != nil {
		return body
	}
	if _, ok := fields["username"]; ok {
		return body
	}
	open := bytes.IndexByte(body, '{')
	out := make([]byte, 0, len(body)+len(name)+13)
	out = append(out, body[:open+1]...)
	out = append(out, `"username":`...)
	out = append(out, name...)
	if len(fields) > 0 {
		out = append(out, ',')
	}
	return append(out, body[open+1:]...)
}
