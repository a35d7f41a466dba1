package main

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/fernet/fernet-go"
)

// toRecord turns a row into the record the module would have stored, or
// says why the row cannot be imported. The reasons are printed: none of
// them quotes the token, the password or the key.
func toRecord(r Row, k *fernet.Key) (Record, error) {
	if r.UserID == nil || !validUserID(*r.UserID) {
		return Record{}, errors.New("user id is not a Nextcloud user id (1 to 64 of A-Z a-z 0-9 space _ . @ - ')")
	}
	if r.Token == nil {
		return Record{}, errors.New("encrypted_password is NULL")
	}
	if r.CreatedAt == nil || r.UpdatedAt == nil {
		return Record{}, errors.New("created_at or updated_at is NULL")
	}
	pw := decrypt(r.Token, k)
	if pw == nil {
		return Record{}, errors.New("encrypted_password does not decrypt with the key (another key, or a corrupt token)")
	}
	if !validAppPassword(pw) {
		return Record{}, errors.New("the decrypted password is not an app password ([A-Za-z0-9-]{20,256})")
	}
	rec := Record{
		UserID:      *r.UserID,
		AppPassword: string(pw),
		Username:    r.Username,
		CreatedAt:   *r.CreatedAt,
		UpdatedAt:   *r.UpdatedAt,
	}
	if r.Username != nil && !utf8.ValidString(*r.Username) {
		return Record{}, errors.New("username is not UTF-8")
	}
	// Read as the MCP server reads it (json.loads(scopes) if scopes else
	// None): NULL, "" and the JSON null are no restriction (nil); "[]" is
	// an empty, non-nil list, which is what encoding/json makes of an
	// empty array.
	if r.Scopes != nil && *r.Scopes != "" {
		var scopes *[]string
		if err := json.Unmarshal([]byte(*r.Scopes), &scopes); err != nil {
			return Record{}, errors.New("scopes is not a JSON list of strings")
		}
		if scopes != nil {
			rec.Scopes = *scopes
		}
	}
	return rec, nil
}

// printableID is a user id as the output shows it: as is when valid,
// quoted otherwise, so a stored id cannot forge or break output lines.
func printableID(r Row) string {
	switch {
	case r.UserID == nil:
		return "(NULL)"
	case validUserID(*r.UserID):
		return *r.UserID
	default:
		return strconv.Quote(*r.UserID)
	}
}

// validUserID is the module's rule for user ids (Nextcloud's
// OC\User\Manager): 1 to 64 bytes of A-Z a-z 0-9, space and _ . @ - ', not
// "." or "..". It also keeps every id one safe segment of a Vault path.
func validUserID(id string) bool {
	if id == "" || len(id) > 64 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == ' ', c == '_', c == '.', c == '@', c == '-', c == '\'':
		default:
			return false
		}
	}
	return true
}

// validAppPassword is the format the MCP server checked before storing
// (^[a-zA-Z0-9-]{20,256}$): anything else in its table is not a password
// it accepted.
func validAppPassword(p []byte) bool {
	if len(p) < 20 || len(p) > 256 {
		return false
	}
	for _, c := range p {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
