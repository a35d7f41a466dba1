package caddyapppw

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv/vaultkvtest"
)

// KV v1 has no check-and-set: a re-provisioning must read the record
// first to keep created_at.
func TestKVv1RePostKeepsCreatedAt(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.useKVv1()
	e.nc.AddUser("alice", "", alicePW, alicePW2)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.clock.Advance(time.Hour)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, `{"scopes":["notes.read"]}`).expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":["notes.read"]}`)
	got := e.stored("alice")
	if got["created_at"] != json.Number("1800000000") || got["updated_at"] != json.Number("1800003600") || got["app_password"] != alicePW2 {
		t.Fatalf("Vault holds %v", got)
	}
}

// A PATCH that read the record before a DELETE removed it must not write
// it back. The proxy holds the PATCH's read until the DELETE is done.
func TestKVv1PatchAfterDeleteDoesNotResurrect(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	proxy := vaultkvtest.NewProxy(t, e.vault.Addr)
	e.vaultAddr = proxy.URL
	e.useKVv1()
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)

	read := proxy.HoldNext("GET", "/v1/"+e.mount+"/"+e.secretPath("alice"), true)
	patched := make(chan answer, 1)
	go func() {
		patched <- e.call("PATCH", "/api/v1/users/alice/scopes", "alice:"+alicePW, `{"scopes":["notes.read"]}`)
	}()
	<-read.Held // the PATCH holds the record as it was
	e.call("DELETE", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password deleted for alice"}`)
	read.Let()

	(<-patched).expect(t, 404, `{"success":false,"error":"No app password provisioned for this user"}`)
	if got := e.stored("alice"); got != nil {
		t.Fatalf("the PATCH brought the deleted secret back: %v", got)
	}
}
