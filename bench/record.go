package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// The provisioning baseline is the module's own write, so that the ratio
// measures the module and not a cheaper write: Vault's CPU per write grows
// with the path's depth, with check-and-set, and with the number of keys
// already stored. Each side writes, once per new user id:
//
//   - the same record: the six fields of docs/API.md's Vault layout, as
//     the module stores them for Astrolabe's POST {"username": "<uid>"};
//   - at the same depth: <mount>/data/<prefix>/<uid>, the module under its
//     default path_prefix, the baseline under a sibling prefix;
//   - create-only (cas=0), to the same KV v2 mount of the same Vault;
//   - in alternating rounds of the same number of writes, so each side's
//     rounds start, on average, with as many keys stored (alternate).

const (
	vaultMount = "secret"
	// modulePrefix is the module's default path_prefix (docs/API.md).
	modulePrefix = "nextcloud-mcp/app-passwords"
	// baselinePrefix is a sibling of modulePrefix, of the same depth.
	baselinePrefix = "nextcloud-mcp/raw-puts"
)

// baselineRecord is the record the module stores when uid provisions
// password with Astrolabe's body {"username": "<uid>"} at Unix time now:
// the login name is the uid, and Astrolabe sends no scopes.
func baselineRecord(uid, password string, now int64) map[string]any {
	return map[string]any{
		"user_id":      uid,
		"app_password": password,
		"username":     uid,
		"scopes":       nil,
		"created_at":   now,
		"updated_at":   now,
	}
}

// asJSON is v as encoding/json decodes it, so that records built in Go and
// records read back from Vault (whose client decodes numbers as
// json.Number) compare as the JSON Vault stores.
func asJSON(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(raw, &m)
}

// sameAsBaseline checks a record read back from Vault for uid against
// baselineRecord with the record's own created_at: the same fields, JSON
// types and values.
func sameAsBaseline(stored map[string]any, uid, password string) error {
	got, err := asJSON(stored)
	if err != nil {
		return err
	}
	created, ok := got["created_at"].(float64)
	if !ok || created != float64(int64(created)) {
		return fmt.Errorf("the record of %s has created_at %v, not a Unix time in seconds", uid, got["created_at"])
	}
	want, err := asJSON(baselineRecord(uid, password, int64(created)))
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("the record of %s is %s, the baseline writes %s", uid, redact(got, password), redact(want, password))
	}
	return nil
}

// redact shows a record without its password, for an error message.
func redact(m map[string]any, password string) string {
	c := make(map[string]any, len(m))
	for k, v := range m {
		if v == password {
			v = "<the password>"
		}
		c[k] = v
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(c) // decoded JSON always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
