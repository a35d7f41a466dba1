package caddyapppw

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/hashicorp/vault/api"
)

// useKVv1 gives the test a KV v1 mount of its own and a config on it.
func (e *env) useKVv1() {
	e.t.Helper()
	needsVault(e.t)
	e.mount, e.kv = uniqueName(e.t, "kv1"), 1
	if err := e.vault.Root.Sys().MountWithContext(e.t.Context(), e.mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		e.t.Fatal(err)
	}
	e.vaultAuth += "\n kv_version 1"
	e.load(e.caddyfile(e.settings))
}

// A record whose app_password is empty (written by hand, or by a broken
// writer) must not let an empty BasicAuth password in: the password goes
// to Nextcloud, which refuses it.
func TestEmptyStoredPasswordNeverMatches(t *testing.T) {
	e := newEnv(t, "")
	e.putRecord("victim", map[string]any{
		"user_id": "victim", "app_password": "", "username": nil, "scopes": nil,
		"created_at": 1_800_000_000, "updated_at": 1_800_000_000,
	})
	before := e.nc.Calls()
	p := "/api/v1/users/victim"
	e.call("GET", p+"/app-password", "victim:", "").expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	e.call("GET", p+"/access", "victim:", "").expect(t, 401, `{"success":false,"error":"Invalid credentials"}`)
	e.call("PATCH", p+"/scopes", "victim:", `{"scopes":["notes.read"]}`).expect(t, 401, `{"success":false,"error":"Invalid credentials"}`)
	e.call("DELETE", p+"/app-password", "victim:", "").expect(t, 401, `{"success":false,"error":"Invalid credentials"}`)
	if n := e.nc.Calls() - before; n != 4 {
		t.Fatalf("Nextcloud was asked %d times, want 4 (once per request)", n)
	}
	if got := e.stored("victim"); got == nil || got["scopes"] != nil {
		t.Fatalf("Vault holds %v", got)
	}
}

// PATCH writes to the path of the user id the request was checked for,
// never to one named by the stored user_id field.
func TestPatchWritesToTheRequestPath(t *testing.T) {
	for _, kv := range []int{1, 2} {
		t.Run(map[int]string{1: "kv1", 2: "kv2"}[kv], func(t *testing.T) {
			e := newEnv(t, "")
			if kv == 1 {
				e.useKVv1()
			}
			e.putRecord("alice", map[string]any{
				"user_id": "bob", "app_password": alicePW, "username": nil, "scopes": nil,
				"created_at": 1_700_000_000, "updated_at": 1_700_000_000,
			})
			e.call("PATCH", "/api/v1/users/alice/scopes", "alice:"+alicePW, `{"scopes":["notes.read"]}`).expect(t, 200,
				`{"success":true,"message":"Scopes updated successfully","scopes":["notes.read"]}`)
			if got := e.stored("bob"); got != nil {
				t.Fatalf("PATCH of alice wrote bob's secret: %v", got)
			}
			got := e.stored("alice")
			if got["user_id"] != "alice" || !reflect.DeepEqual(got["scopes"], []any{"notes.read"}) ||
				got["app_password"] != alicePW || got["created_at"] != json.Number("1700000000") ||
				got["updated_at"] != json.Number("1800000000") {
				t.Fatalf("alice's secret: %v", got)
			}
		})
	}
}

// An operator's "vault kv delete" soft-deletes the current version: no
// readable password, but the version (and any older one not destroyed)
// can be brought back with "vault kv undelete". The user's DELETE purges
// all of it and says so.
func TestDeleteWithSoftDeletedCurrentVersionPurges(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.softDelete("alice")
	e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"user_id":"alice","has_app_password":false}`)

	e.call("DELETE", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password deleted for alice"}`)
	if !e.memory() { // what Vault keeps after the purge
		kv := e.vault.Root.KVv2(e.mount)
		if _, err := kv.GetMetadata(t.Context(), e.secretPath("alice")); !errors.Is(err, api.ErrSecretNotFound) {
			t.Fatalf("metadata after DELETE: %v", err)
		}
		if err := kv.Undelete(t.Context(), e.secretPath("alice"), []int{1}); err == nil {
			if got := e.stored("alice"); got != nil {
				t.Fatalf("undelete brought back %v", got)
			}
		}
	}

	// With nothing left, DELETE says so.
	e.call("DELETE", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"No app password found to delete"}`)
}
