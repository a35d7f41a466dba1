package caddyapppw

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeCaddyfile writes a Caddyfile for a command to read.
func writeCaddyfile(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// `list` shows each stored user, never a password; the sweep's lease is
// no user; a record it cannot read is listed with the reason and makes
// the command fail.
func TestListCommand(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	// The handlers' clock stands at 1_800_000_000.
	e.putRecord("alice", map[string]any{
		"user_id": "alice", "app_password": alicePW, "username": "alice@example.com",
		"scopes": []string{"notes.read", "mail.send"}, "created_at": 1_799_000_000, "updated_at": 1_799_913_600,
	})
	e.putRecord("bob", map[string]any{
		"user_id": "bob", "app_password": alicePW2, "username": nil, "scopes": nil,
		"created_at": 1_799_990_000, "updated_at": 1_799_996_400,
	})
	e.putRecord("carol", map[string]any{
		"user_id": "carol", "app_password": alicePW2, "username": "", "scopes": []string{},
		"created_at": 1_799_999_955, "updated_at": 1_799_999_955,
		"mcp_pending": "delete", "mcp_pending_since": 1_799_999_700,
	})
	if _, err := e.vault.Root.KVv2(e.mount).Put(t.Context(), e.prefix+"/_sweep/lease", map[string]any{"holder": "h", "expires_at": ""}); err != nil {
		t.Fatal(err)
	}
	file := writeCaddyfile(t, e.caddyfile("deliver_to_mcp 127.0.0.1:9"))
	store := "secret/" + e.prefix + " at " + e.vault.Addr

	var out bytes.Buffer
	ok, err := runList(t.Context(), &out, file, "caddyfile", false)
	want := store + `: 3 users, 1 owing the MCP server a change
USER ID  LOGIN              SCOPES                CREATED               UPDATED               AGE   MCP SERVER
alice    alice@example.com  notes.read,mail.send  2027-01-03T18:13:20Z  2027-01-14T08:00:00Z  1d0h  in sync
bob      bob                (all)                 2027-01-15T05:13:20Z  2027-01-15T07:00:00Z  1h0m  in sync
carol    carol              (none)                2027-01-15T07:59:15Z  2027-01-15T07:59:15Z  45s   owes delete (5m)
`
	if !ok || err != nil || out.String() != want {
		t.Fatalf("ok=%v err=%v\n%s\nwant\n%s", ok, err, out.String(), want)
	}

	out.Reset()
	ok, err = runList(t.Context(), &out, file, "caddyfile", true)
	wantJSON := `[
  {
    "store": "` + store + `",
    "user_id": "alice",
    "login": "alice@example.com",
    "username": "alice@example.com",
    "scopes": [
      "notes.read",
      "mail.send"
    ],
    "created_at": 1799000000,
    "updated_at": 1799913600,
    "age_seconds": 86400
  },
  {
    "store": "` + store + `",
    "user_id": "bob",
    "login": "bob",
    "username": null,
    "scopes": null,
    "created_at": 1799990000,
    "updated_at": 1799996400,
    "age_seconds": 3600
  },
  {
    "store": "` + store + `",
    "user_id": "carol",
    "login": "carol",
    "username": "",
    "scopes": [],
    "created_at": 1799999955,
    "updated_at": 1799999955,
    "age_seconds": 45,
    "mcp_pending": "delete",
    "mcp_pending_since": 1799999700
  }
]
`
	if !ok || err != nil || out.String() != wantJSON {
		t.Fatalf("--json: ok=%v err=%v\n%s\nwant\n%s", ok, err, out.String(), wantJSON)
	}

	// A record that is not one.
	e.putRecord("mallory", map[string]any{"user_id": "mallory", "app_password": 5})
	out.Reset()
	ok, err = runList(t.Context(), &out, file, "caddyfile", false)
	if ok || err != nil || !strings.Contains(out.String(), store+": 4 users, 1 owing the MCP server a change\n") ||
		!strings.Contains(out.String(), "\nmallory  unreadable: stored record is malformed: json: cannot unmarshal number") {
		t.Fatalf("ok=%v err=%v\n%s", ok, err, out.String())
	}
	if strings.Contains(out.String(), alicePW) || strings.Contains(out.String(), alicePW2) {
		t.Fatal("list shows a password")
	}

	// Without the LIST capability: the command fails and says why.
	e.vaultAuth = "token " + tokenWithPolicy(t, e, strings.Replace(policyFor(t, e, "policy.hcl"), `["list"]`, `[]`, 1), nil)
	out.Reset()
	ok, err = runList(t.Context(), &out, writeCaddyfile(t, e.caddyfile("")), "caddyfile", false)
	if ok || err != nil || !strings.HasPrefix(out.String(), store+": FAIL permission denied: ") {
		t.Fatalf("ok=%v err=%v\n%s", ok, err, out.String())
	}
}
