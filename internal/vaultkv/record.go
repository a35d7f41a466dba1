package vaultkv

import (
	"encoding/json"
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

	// Version is the storage's version of this record (KV v2's version
	// number; on KV v1, which has none, a fingerprint of the stored
	// fields), for check-and-set: Save writes only over the version the
	// record was loaded at. Zero means "not stored yet". It is not a
	// field of the secret.
	Version int `json:"-"`
}

// encodeRecord turns rec into the secret's fields. Going through JSON keeps
// the field names in one place, the struct tags of Record.
func encodeRecord(rec *Record) (map[string]any, error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	var data map[string]any
	return data, json.Unmarshal(raw, &data)
}

func decodeRecord(data map[string]any) (*Record, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("stored record is malformed: %w", err)
	}
	return &rec, nil
}
