package vaultkv

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Record is one user's secret as stored, field for field the Vault layout
// of docs/API.md that the MCP server reads.
type Record struct {
	UserID      string   `json:"user_id"`
	AppPassword string   `json:"app_password"`
	Username    *string  `json:"username"`
	Scopes      []string `json:"scopes"`
	CreatedAt   int64    `json:"created_at"`
	UpdatedAt   int64    `json:"updated_at"`

	// MCPPending names the change Vault holds and the MCP server has not
	// taken yet ("post", "patch" or "delete"; see Pending), and
	// MCPPendingSince when it was first left so (Unix seconds). Both are
	// absent when the MCP server's copy follows Vault, and always without
	// deliver_to_mcp. A record pending "delete" is one the user removed:
	// it stays only until the MCP server has deleted its copy too.
	MCPPending      Pending `json:"mcp_pending,omitempty"`
	MCPPendingSince int64   `json:"mcp_pending_since,omitempty"`

	// Version is the storage's version of this record (KV v2's version
	// number; on KV v1, which has none, a fingerprint of the stored
	// fields), for check-and-set: Save writes only over the version the
	// record was loaded at. Zero means "not stored yet". It is not a
	// field of the secret.
	Version int `json:"-"`
}

// Pending is a change of a record the MCP server has yet to take.
type Pending string

// The pending changes, each of which supersedes the ones before it: a
// provisioning delivers the whole record (password, login name, scopes),
// so it covers a scope change; a deletion covers both.
const (
	PendingNone   Pending = ""
	PendingPost   Pending = "post"
	PendingPatch  Pending = "patch"
	PendingDelete Pending = "delete"
)

// Removed reports a record the user deleted, kept only until the MCP
// server deleted its copy: the API answers for it as for no record.
func (r *Record) Removed() bool { return r != nil && r.MCPPending == PendingDelete }

// kv2Write is the body of a KV v2 write as KVv2.Put sends it: the
// secret's fields under "data", the check-and-set version under
// "options".
type kv2Write struct {
	Data    *Record `json:"data"`
	Options struct {
		CAS int `json:"cas"`
	} `json:"options"`
}

// encodeRecord is the body of the write of rec: on KV v2 wrapped with the
// check-and-set version cas, on KV v1 the secret's fields alone. It is
// encoded straight from the struct, whose tags hold the field names:
// handing the library a map, as KVv2.Put wants, meant encoding the record
// to JSON, decoding it into a map, and the library encoding the map again,
// the most allocations of a provisioning. Vault keeps the fields it is
// sent, not their order, so what it stores is the same.
func encodeRecord(rec *Record, kv, cas int) ([]byte, error) {
	if kv == 1 {
		return json.Marshal(rec)
	}
	w := kv2Write{Data: rec}
	w.Options.CAS = cas
	return json.Marshal(&w)
}

// ErrMalformed is returned by Load for a secret whose fields are not a
// record (an operator's or another writer's): the API answers it as a
// storage failure, and the sweep keeps the secret, since it cannot check
// it.
var ErrMalformed = errors.New("stored record is malformed")

func decodeRecord(data map[string]any) (*Record, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &rec, nil
}
