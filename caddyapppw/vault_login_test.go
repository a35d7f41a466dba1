package caddyapppw

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv/vaultkvtest"
)

// appRoleThroughProxy configures AppRole login for the test, with Vault
// behind a proxy that counts the logins. It returns the proxy, the
// role's policy name and the login path.
func appRoleThroughProxy(t *testing.T, e *env, settings string, roleData map[string]any) (*vaultkvtest.Proxy, string, string) {
	t.Helper()
	proxy := vaultkvtest.NewProxy(t, e.vault.Addr)
	e.vaultAddr = proxy.URL
	mount, roleID := appRole(t, e, roleData)
	e.vaultAuth = fmt.Sprintf("approle {\n role_id %s\n secret_id %s\n mount %s\n }", roleID, secretID(t, e, mount, false), mount)
	e.load(e.caddyfile(settings))
	return proxy, uniqueName(t, "pol"), "/v1/auth/" + mount + "/login"
}

// msgCount is how many of the module's log lines carry msg.
func (e *env) msgCount(msg string) int {
	e.t.Helper()
	n := 0
	for _, l := range e.logLines() {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

// A policy that denies a request is not a bad token: a new login would get
// the same policy. Vault answers 403 for both; the module logs in again
// only when lookup-self says the token itself is refused.
func TestAppRolePolicyDenialLogsInOnce(t *testing.T) {
	needsVault(t)
	verifyNoLeaks(t)
	e := newEnv(t, "")
	proxy, policy, login := appRoleThroughProxy(t, e, "", map[string]any{"token_ttl": "1h"})
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)

	// "read" taken away from the role's policy.
	full := policyFor(t, e, "policy.hcl")
	if err := e.vault.Root.Sys().PutPolicyWithContext(t.Context(), policy,
		strings.Replace(full, `["create", "read", "update"]`, `["create", "update"]`, 1)); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 503, storageDown)
	}
	if n := proxy.Count("PUT", login); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	if n := watchers(); n != 1 {
		t.Fatalf("%d renewal goroutines, want 1", n)
	}
	if !e.causeLogged("permission denied: ") {
		t.Fatal("no log line says permission denied")
	}
	if n := e.msgCount("vault refused the token; logging in again"); n != 0 {
		t.Fatalf("%d lines say the token was refused", n)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := watchers(); n != 0 {
		t.Fatalf("after stop: %d renewal goroutines", n)
	}
}

// Without "update" on destroy/ a re-provisioning writes its version and
// then fails to destroy the old one: the write is not repeated (it used to
// be, with a new login, up to 32 times).
func TestAppRoleDeniedDestroyWritesOnce(t *testing.T) {
	needsVault(t)
	verifyNoLeaks(t)
	e := newEnv(t, "")
	proxy, policy, login := appRoleThroughProxy(t, e, "", map[string]any{"token_ttl": "1h"})
	e.nc.AddUser("alice", "", alicePW, alicePW2)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)

	full := policyFor(t, e, "policy.hcl")
	if err := e.vault.Root.Sys().PutPolicyWithContext(t.Context(), policy,
		strings.Replace(full, `capabilities = ["update"]`, `capabilities = []`, 1)); err != nil {
		t.Fatal(err)
	}
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "").expect(t, 503, storageDown)
	meta, err := e.vault.Root.KVv2(e.mount).GetMetadata(t.Context(), e.secretPath("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if meta.CurrentVersion != 2 {
		t.Fatalf("current version %d: the write ran %d times, want once", meta.CurrentVersion, meta.CurrentVersion-1)
	}
	if n := proxy.Count("PUT", login); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	if !e.causeLogged("permission denied: destroying older versions") {
		t.Fatal("no log line says the destroy step was denied")
	}
	if n := watchers(); n != 1 {
		t.Fatalf("%d renewal goroutines, want 1", n)
	}
}

// A token that Vault really refuses (revoked) is replaced by one login,
// its renewal goroutine stops, and a token refused again right after is
// not chased with logins: the next one waits for the backoff.
func TestAppRoleRevokedTokenReplacedWithBackoff(t *testing.T) {
	needsVault(t)
	verifyNoLeaks(t)
	e := newEnv(t, "")
	proxy, _, login := appRoleThroughProxy(t, e, "", map[string]any{"token_ttl": "1h"})
	mount := strings.TrimSuffix(strings.TrimPrefix(login, "/v1/auth/"), "/login")
	e.nc.AddUser("alice", "", alicePW)
	status := func(code int) {
		t.Helper()
		want := `{"success":true,"user_id":"alice","has_app_password":false}`
		if code != 200 {
			want = storageDown
		}
		e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, code, want)
	}
	revoke := func() {
		t.Helper()
		if err := e.vault.Root.Sys().RevokePrefixWithContext(t.Context(), "auth/"+mount+"/login"); err != nil {
			t.Fatal(err)
		}
	}
	status(200)
	revoke()
	status(200)
	if n := proxy.Count("PUT", login); n != 2 {
		t.Fatalf("%d logins, want 2", n)
	}
	if n := e.msgCount("vault refused the token; logging in again"); n != 1 {
		t.Fatalf("%d lines say the token was refused, want 1", n)
	}
	if n := watchers(); n != 1 {
		t.Fatalf("%d renewal goroutines, want 1", n)
	}

	// Refused again at once: no login until the backoff has passed.
	revoke()
	status(503)
	status(503)
	if n := proxy.Count("PUT", login); n != 2 {
		t.Fatalf("%d logins within the backoff, want 2", n)
	}
	e.clock.Advance(vaultkv.MaxLoginBackoff)
	status(200)
	if n := proxy.Count("PUT", login); n != 3 {
		t.Fatalf("%d logins after the backoff, want 3", n)
	}
	if n := watchers(); n != 1 {
		t.Fatalf("%d renewal goroutines, want 1", n)
	}
}

// A login that fails (a wrong secret id) is not retried by every request:
// the next try waits for the backoff.
func TestAppRoleFailedLoginBacksOff(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	proxy := vaultkvtest.NewProxy(t, e.vault.Addr)
	e.vaultAddr = proxy.URL
	mount, roleID := appRole(t, e, nil)
	e.vaultAuth = fmt.Sprintf("approle {\n role_id %s\n secret_id not-the-secret-id\n mount %s\n }", roleID, mount)
	e.load(e.caddyfile(""))
	e.nc.AddUser("alice", "", alicePW)
	login := "/v1/auth/" + mount + "/login"
	for range 3 {
		e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 503, storageDown)
	}
	if n := proxy.Count("PUT", login); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	e.clock.Advance(vaultkv.MaxLoginBackoff)
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 503, storageDown)
	if n := proxy.Count("PUT", login); n != 2 {
		t.Fatalf("%d logins after the backoff, want 2", n)
	}
}

// A static token whose first use finds Vault sealed is still renewed once
// Vault is back: it stays valid past the TTL it was created with.
func TestStaticTokenRenewedAfterSealedStart(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	dir := ownVault(t, e)
	const ttl = 10 * time.Second
	token := tokenWithPolicy(t, e, policyFor(t, e, "policy.hcl"), map[string]any{"ttl": ttl.String()})
	created := time.Now()
	e.vaultAuth = "token " + token
	e.load(e.caddyfile(""))
	e.nc.AddUser("alice", "", alicePW)
	access := func() answer { return e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "") }
	const unprovisioned = `{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`

	if err := e.vault.Root.Sys().SealWithContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	access().expect(t, 503, storageDown)
	waitFor(t, 10*time.Second, "the token lookup to fail", func() bool {
		for _, l := range e.logLines() {
			if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "vault token lookup failed") {
				return true
			}
		}
		return false
	})
	key, err := os.ReadFile(filepath.Join(dir, "unseal.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.vault.Root.Sys().UnsealWithContext(t.Context(), hex.EncodeToString(key)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ttl, "a renewal", func() bool { return e.msgCount("vault token renewed") > 0 })

	// Past the TTL it was created with, the token still works.
	waitFor(t, 2*ttl, "the original TTL to pass", func() bool {
		access().expect(t, 200, unprovisioned)
		return time.Since(created) > ttl+time.Second
	})
	sec, err := e.vault.Root.Auth().Token().LookupWithContext(t.Context(), token)
	if err != nil {
		t.Fatalf("token lookup after its first TTL: %v", err)
	}
	if left, _ := sec.TokenTTL(); left <= 0 {
		t.Fatalf("token TTL %s", left)
	}
}

// waitFor polls cond until it holds or timeout passes, pacing the polls;
// for states of other processes (Vault's, the log file) that nothing
// signals.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
