package caddyapppw

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
)

// rootWrite writes to Vault as root and fails the test on error.
func rootWrite(t *testing.T, v *devvault.Server, path string, data map[string]any) *api.Secret {
	t.Helper()
	sec, err := v.Root.Logical().WriteWithContext(t.Context(), path, data)
	if err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
	return sec
}

// uniqueName turns the test's name into a Vault mount or policy name.
func uniqueName(t *testing.T, kind string) string {
	return kind + "-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
}

// policyFor returns vault/policy.hcl rewritten for the test's mount and
// path prefix, capabilities untouched.
func policyFor(t *testing.T, e *env, file string) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "vault", file))
	if err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(string(text), "nextcloud-mcp/app-passwords/", e.prefix+"/")
	return strings.ReplaceAll(out, `"secret/`, `"`+e.mount+`/`)
}

// tokenWithPolicy creates a token carrying the policy text (and Vault's
// default policy), optionally with a TTL.
func tokenWithPolicy(t *testing.T, e *env, policy string, data map[string]any) string {
	t.Helper()
	name := uniqueName(t, "pol")
	if err := e.vault.Root.Sys().PutPolicyWithContext(t.Context(), name, policy); err != nil {
		t.Fatal(err)
	}
	req := map[string]any{"policies": []string{name}}
	for k, v := range data {
		req[k] = v
	}
	return rootWrite(t, e.vault, "auth/token/create", req).Auth.ClientToken
}

// wholeAPI runs every route of the API once for uid, as Astrolabe and an
// operator would, and checks Vault after each write.
func wholeAPI(t *testing.T, e *env, uid string) {
	t.Helper()
	e.nc.AddUser(uid, uid+"@example.com", alicePW)
	e.nc.AddAppPassword(uid, uid, alicePW2) // the re-POST below logs in as the uid
	p := "/api/v1/users/" + uid
	auth, auth2 := uid+":"+alicePW, uid+":"+alicePW2

	e.call("POST", p+"/app-password", auth, `{"username":"`+uid+`@example.com"}`).expect(t, 200,
		`{"success":true,"message":"App password stored for `+uid+`","scopes":null}`)
	if got := e.stored(uid); got["app_password"] != alicePW || got["username"] != uid+"@example.com" {
		t.Fatalf("after POST Vault holds %v", got)
	}
	e.call("GET", p+"/app-password", auth, "").expect(t, 200, `{"success":true,"user_id":"`+uid+`","has_app_password":true}`)
	e.call("GET", p+"/access", auth, "").expect(t, 200, `{"success":true,"user_id":"`+uid+
		`","provisioned":true,"scopes":null,"username":"`+uid+`@example.com","created_at":1800000000,"updated_at":1800000000}`)
	e.call("PATCH", p+"/scopes", auth, `{"scopes":["notes.read"]}`).expect(t, 200,
		`{"success":true,"message":"Scopes updated successfully","scopes":["notes.read"]}`)
	e.call("POST", p+"/app-password", auth2, "").expect(t, 200,
		`{"success":true,"message":"App password stored for `+uid+`","scopes":null}`)
	if got := e.stored(uid); got["app_password"] != alicePW2 || got["created_at"] != json.Number("1800000000") {
		t.Fatalf("after re-POST Vault holds %v", got)
	}
	if e.kv == 2 {
		if v := e.readableVersions(uid); len(v) != 1 {
			t.Fatalf("readable versions %v, want one", v)
		}
	}
	e.call("DELETE", p+"/app-password", auth2, "").expect(t, 200, `{"success":true,"message":"App password deleted for `+uid+`"}`)
	if got := e.stored(uid); got != nil {
		t.Fatalf("after DELETE Vault holds %v", got)
	}
	e.call("GET", "/api/v1/scopes", "", "")
}

func TestAuthTokenWithExactPolicy(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.vaultAuth = "token " + tokenWithPolicy(t, e, policyFor(t, e, "policy.hcl"), nil)
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "alice")
}

func TestPolicyWithoutOneCapability(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW, alicePW2)
	full := policyFor(t, e, "policy.hcl")

	// Without "delete" on metadata: everything but DELETE works.
	e.vaultAuth = "token " + tokenWithPolicy(t, e, strings.Replace(full, `["delete"]`, `[]`, 1), nil)
	e.load(e.caddyfile(""))
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.call("DELETE", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 503,
		`{"success":false,"error":"Secret storage unavailable"}`)
	if e.stored("alice") == nil {
		t.Fatal("secret gone although DELETE failed")
	}
	var logged bool
	for _, l := range e.logLines() {
		cause, _ := l["cause"].(string)
		if l["route"] == "app-password" && l["method"] == "DELETE" && strings.HasPrefix(cause, "permission denied: ") {
			logged = true
		}
	}
	if !logged {
		t.Fatal("no log line says permission denied")
	}

	// Without "create" on data: a first POST fails and nothing is stored.
	e.vaultAuth = "token " + tokenWithPolicy(t, e, strings.Replace(full, `["create", "read", "update"]`, `["read", "update"]`, 1), nil)
	e.load(e.caddyfile(""))
	e.nc.AddUser("bob", "", alicePW)
	e.call("POST", "/api/v1/users/bob/app-password", "bob:"+alicePW, "").expect(t, 503,
		`{"success":false,"error":"Secret storage unavailable"}`)
	if e.stored("bob") != nil {
		t.Fatal("a refused create left a secret")
	}
}

func TestMCPServerPolicyReadsAndListsOnly(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	mcp, err := e.vault.Root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	mcp.SetToken(tokenWithPolicy(t, e, policyFor(t, e, "mcp-server-policy.hcl"), nil))
	list, err := mcp.Logical().ListWithContext(t.Context(), e.mount+"/metadata/"+e.prefix)
	if err != nil || list == nil || !reflect.DeepEqual(list.Data["keys"], []any{"alice"}) {
		t.Fatalf("list: %v %v", list, err)
	}
	sec, err := mcp.KVv2(e.mount).Get(t.Context(), e.secretPath("alice"))
	if err != nil || sec.Data["app_password"] != alicePW {
		t.Fatalf("read: %v", err)
	}
	if _, err := mcp.KVv2(e.mount).Put(t.Context(), e.secretPath("alice"), map[string]any{"x": 1}); !forbidden(err) {
		t.Fatalf("the MCP server's policy can write: %v", err)
	}
}

func TestAuthTokenFileRotation(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	policy := policyFor(t, e, "policy.hcl")
	file := filepath.Join(t.TempDir(), "vault-token")
	tokenA := tokenWithPolicy(t, e, policy, nil)
	if err := os.WriteFile(file, []byte(tokenA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.vaultAuth = "token_file " + file
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "alice")

	// The agent writes a new token and the old one is revoked: the next
	// request uses the new one, without a reload.
	tokenB := tokenWithPolicy(t, e, policy, nil)
	if err := os.WriteFile(file, []byte(tokenB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rootWrite(t, e.vault, "auth/token/revoke", map[string]any{"token": tokenA})
	wholeAPI(t, e, "bob")

	// Rewritten to the same size in the same instant the stat check may
	// not notice; the 403 from Vault makes it read the file again.
	tokenC := tokenWithPolicy(t, e, policy, nil)
	fi, _ := os.Stat(file)
	if err := os.WriteFile(file, []byte(tokenC+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(file, fi.ModTime(), fi.ModTime())
	rootWrite(t, e.vault, "auth/token/revoke", map[string]any{"token": tokenB})
	wholeAPI(t, e, "carol")
}

// appRole enables AppRole at a mount of the test's own and creates a role
// with the module's policy; it returns the mount and the role id.
func appRole(t *testing.T, e *env, roleData map[string]any) (mount, roleID string) {
	t.Helper()
	mount = uniqueName(t, "approle")
	if err := e.vault.Root.Sys().EnableAuthWithOptionsWithContext(t.Context(), mount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	name := uniqueName(t, "pol")
	if err := e.vault.Root.Sys().PutPolicyWithContext(t.Context(), name, policyFor(t, e, "policy.hcl")); err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"token_policies": []string{name}}
	for k, v := range roleData {
		data[k] = v
	}
	rootWrite(t, e.vault, "auth/"+mount+"/role/caddy", data)
	sec, err := e.vault.Root.Logical().ReadWithContext(t.Context(), "auth/"+mount+"/role/caddy/role-id")
	if err != nil {
		t.Fatal(err)
	}
	return mount, sec.Data["role_id"].(string)
}

func secretID(t *testing.T, e *env, mount string, wrapped bool) string {
	t.Helper()
	c, err := e.vault.Root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(e.vault.Token)
	if wrapped {
		c.SetWrappingLookupFunc(func(string, string) string { return "120s" })
	}
	sec, err := c.Logical().WriteWithContext(t.Context(), "auth/"+mount+"/role/caddy/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	if wrapped {
		return sec.WrapInfo.Token
	}
	return sec.Data["secret_id"].(string)
}

func TestAuthAppRole(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	mount, roleID := appRole(t, e, nil)

	file := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(file, []byte(secretID(t, e, mount, false)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_SECRET_ID", secretID(t, e, mount, false))
	for i, secret := range []string{
		"secret_id " + secretID(t, e, mount, false),
		"secret_id_file " + file,
		"secret_id_env TEST_SECRET_ID",
	} {
		e.vaultAuth = fmt.Sprintf("approle {\n role_id %s\n %s\n mount %s\n }", roleID, secret, mount)
		e.load(e.caddyfile(""))
		wholeAPI(t, e, fmt.Sprintf("user%d", i))
	}
}

func TestAuthAppRoleWrappedSecretID(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	mount, roleID := appRole(t, e, nil)
	roleFile := filepath.Join(t.TempDir(), "role-id")
	if err := os.WriteFile(roleFile, []byte(roleID), 0o600); err != nil {
		t.Fatal(err)
	}
	e.vaultAuth = fmt.Sprintf("approle {\n role_id_file %s\n secret_id %s\n wrapped\n mount %s\n }", roleFile, secretID(t, e, mount, true), mount)
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "alice")
}

func TestAuthKubernetes(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	// The Kubernetes API's TokenReview, approving exactly our token.
	jwt := fakeServiceAccountJWT("caddy", "web", "uid-1")
	var reviews int
	var mu sync.Mutex
	k8s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			Spec struct {
				Token string `json:"token"`
			} `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&review)
		mu.Lock()
		reviews++
		mu.Unlock()
		status := map[string]any{"authenticated": false}
		if r.URL.Path == "/apis/authentication.k8s.io/v1/tokenreviews" && review.Spec.Token == jwt {
			status = map[string]any{"authenticated": true, "user": map[string]any{
				"username": "system:serviceaccount:web:caddy", "uid": "uid-1",
				"groups": []string{"system:serviceaccounts", "system:serviceaccounts:web"},
			}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "status": status,
		})
	}))
	t.Cleanup(k8s.Close)

	mount := uniqueName(t, "k8s")
	if err := e.vault.Root.Sys().EnableAuthWithOptionsWithContext(t.Context(), mount, &api.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	rootWrite(t, e.vault, "auth/"+mount+"/config", map[string]any{"kubernetes_host": k8s.URL, "disable_local_ca_jwt": true})
	pol := uniqueName(t, "pol")
	if err := e.vault.Root.Sys().PutPolicyWithContext(t.Context(), pol, policyFor(t, e, "policy.hcl")); err != nil {
		t.Fatal(err)
	}
	rootWrite(t, e.vault, "auth/"+mount+"/role/caddy", map[string]any{
		"bound_service_account_names": "caddy", "bound_service_account_namespaces": "web", "token_policies": pol,
	})

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(jwt), 0o600); err != nil {
		t.Fatal(err)
	}
	e.vaultAuth = fmt.Sprintf("kubernetes caddy {\n token_path %s\n mount %s\n }", tokenFile, mount)
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "alice")
	mu.Lock()
	defer mu.Unlock()
	if reviews == 0 {
		t.Fatal("Vault never asked the TokenReview API")
	}
}

// fakeServiceAccountJWT is a service-account token as Kubernetes issues
// it. Vault's kubernetes auth, configured without public keys, leaves the
// signature to TokenReview, so it is not a real one.
func fakeServiceAccountJWT(name, namespace, uid string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss":                                    "kubernetes/serviceaccount",
		"kubernetes.io/serviceaccount/namespace": namespace,
		"kubernetes.io/serviceaccount/service-account.name": name,
		"kubernetes.io/serviceaccount/service-account.uid":  uid,
		"sub": "system:serviceaccount:" + namespace + ":" + name,
	}) + "." + base64.RawURLEncoding.EncodeToString([]byte("not-a-signature"))
}

func TestTokenRenewedThenReplacedByLogin(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	// Tokens live 2 s and can be renewed up to 5 s in all.
	mount, roleID := appRole(t, e, map[string]any{"token_ttl": "2s", "token_max_ttl": "5s"})
	e.vaultAuth = fmt.Sprintf("approle {\n role_id %s\n secret_id %s\n mount %s\n }", roleID, secretID(t, e, mount, false), mount)
	e.load(e.caddyfile(""))
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)

	// Keep serving until the log shows a renewal and two logins after
	// the first: requests must not fail across either, and no request may
	// meet an expired token. The logins must be the early ones, ahead of
	// the max TTL: a login after Vault refused the token would also
	// answer 200, so the refusal's own line is what tells them apart.
	deadline := time.Now().Add(45 * time.Second)
	for {
		e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
			`{"success":true,"user_id":"alice","has_app_password":true}`)
		logins, renewals, early, refused := 0, 0, 0, 0
		for _, l := range e.logLines() {
			switch l["msg"] {
			case "vault login":
				logins++
			case "vault token renewed":
				renewals++
			case "vault token reached its max TTL; logging in again", "vault token not renewed in time; logging in again":
				early++
			case "vault refused the token; logging in again":
				refused++
			}
		}
		if refused > 0 {
			for _, l := range e.logLines() {
				if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "vault") {
					t.Logf("%.3f %s %v", l["ts"], msg, l["ttl"])
				}
			}
			t.Fatalf("%d requests met an expired token", refused)
		}
		if logins >= 3 && renewals >= 1 {
			if early < 2 {
				t.Fatalf("%d logins, only %d of them ahead of the max TTL", logins, early)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45 s: %d logins, %d renewals", logins, renewals)
		}
	}
}

func TestKVv1Mount(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.mount, e.kv = uniqueName(t, "kv1"), 1
	if err := e.vault.Root.Sys().MountWithContext(t.Context(), e.mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	e.vaultAuth = "token " + tokenWithPolicy(t, e, policyFor(t, e, "policy-kv1.hcl"), nil) + "\n kv_version 1"
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "alice")
}

func TestCustomMountAndPrefix(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.mount, e.prefix = uniqueName(t, "kv2"), "teams/blue/pw"
	if err := e.vault.Root.Sys().MountWithContext(t.Context(), e.mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "alice")
}

func TestNamespaceHeaderSent(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	target, _ := url.Parse(e.vault.Addr)
	var mu sync.Mutex
	seen := map[string]int{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-Vault-Namespace")]++
		mu.Unlock()
		// Vault CE has no namespaces: the proxy plays the Enterprise
		// router and strips the header.
		r.Header.Del("X-Vault-Namespace")
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.Close)
	e.vaultAddr = rec.URL
	e.vaultAuth = "token " + e.vault.Token + "\n namespace team-a/"
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "alice")
	mu.Lock()
	defer mu.Unlock()
	if seen["team-a/"] == 0 || len(seen) != 1 {
		t.Fatalf("namespace headers seen: %v", seen)
	}
}

func TestVaultOverTLSAndMutualTLS(t *testing.T) {
	needsVault(t)
	pki := newTestPKI(t)
	e := newEnv(t, "")

	tlsVault := devvault.Start(t, devvault.Options{Args: []string{"-tls-cert", pki.serverCert, "-tls-key", pki.serverKey}})
	e.vault, e.vaultAddr, e.vaultAuth = tlsVault, tlsVault.Addr, "token "+tlsVault.Token+"\n ca_cert "+pki.caCert
	e.vault.Root = pki.rootClient(t, tlsVault, "", "")
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "alice")

	// Without the CA the server is not trusted: storage is unavailable.
	e.vaultAuth = "token " + tlsVault.Token
	e.load(e.caddyfile(""))
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 503, `{"success":false,"error":"Secret storage unavailable"}`)

	mtlsVault := devvault.Start(t, devvault.Options{Args: []string{"-tls-cert", pki.serverCert, "-tls-key", pki.serverKey, "-tls-client-ca", pki.caCert}})
	e.vault, e.vaultAddr = mtlsVault, mtlsVault.Addr
	e.vault.Root = pki.rootClient(t, mtlsVault, pki.clientCert, pki.clientKey)
	e.vaultAuth = fmt.Sprintf("token %s\n ca_cert %s\n client_cert %s\n client_key %s\n tls_server_name localhost", mtlsVault.Token, pki.caCert, pki.clientCert, pki.clientKey)
	e.load(e.caddyfile(""))
	wholeAPI(t, e, "bob")

	// Without the client certificate the handshake fails.
	e.vaultAuth = fmt.Sprintf("token %s\n ca_cert %s", mtlsVault.Token, pki.caCert)
	e.load(e.caddyfile(""))
	e.call("GET", "/api/v1/users/bob/access", "bob:"+alicePW, "").expect(t, 503, `{"success":false,"error":"Secret storage unavailable"}`)
}

func TestConcurrentProvisionsOfOneUser(t *testing.T) {
	e := newEnv(t, "rate_limit 100 1h")
	// 64 writers for one user: each lost check-and-set round re-reads and
	// tries again; maxSaveAttempts bounds the rounds.
	e.nc.AddUser("alice", "", alicePW, alicePW2)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.clock.Advance(time.Hour)

	var wg sync.WaitGroup
	answers := make([]answer, 64)
	for i := range answers {
		wg.Go(func() {
			pw := alicePW
			if i%2 == 1 {
				pw = alicePW2
			}
			answers[i] = e.call("POST", "/api/v1/users/alice/app-password", "alice:"+pw, "")
		})
	}
	wg.Wait()
	for i, a := range answers {
		a.expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
		_ = i
	}
	got := e.stored("alice")
	if got["created_at"] != json.Number("1800000000") || got["updated_at"] != json.Number("1800003600") ||
		(got["app_password"] != alicePW && got["app_password"] != alicePW2) {
		t.Fatalf("Vault holds %v", got)
	}
	if v := e.readableVersions("alice"); !reflect.DeepEqual(v, []int{65}) {
		t.Fatalf("readable versions %v, want [65]", v)
	}
}

func TestConcurrentProvisionsOfManyUsers(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AcceptAnyUser(alicePW)
	var wg sync.WaitGroup
	answers := make([]answer, 64)
	for i := range answers {
		wg.Go(func() {
			uid := fmt.Sprintf("user%02d", i)
			answers[i] = e.call("POST", "/api/v1/users/"+uid+"/app-password", uid+":"+alicePW, `{"username":"`+uid+`"}`)
		})
	}
	wg.Wait()
	for i, a := range answers {
		uid := fmt.Sprintf("user%02d", i)
		a.expect(t, 200, `{"success":true,"message":"App password stored for `+uid+`","scopes":null}`)
		if got := e.stored(uid); got["user_id"] != uid || got["username"] != uid || got["app_password"] != alicePW {
			t.Fatalf("%s: Vault holds %v", uid, got)
		}
		if v := e.readableVersions(uid); !reflect.DeepEqual(v, []int{1}) {
			t.Fatalf("%s: readable versions %v", uid, v)
		}
	}
}

// watchers counts the goroutines of the Vault store's renewal loops that are
// running: those with goWatch's closure or renew in a frame of their own
// (not in a "created by" line), just started or already renewing.
func watchers() int {
	buf := make([]byte, 1<<22)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			if !strings.HasPrefix(line, "created by") && strings.Contains(line, "vaultkv.(*auth).") &&
				(strings.Contains(line, "goWatch.func1(") || strings.Contains(line, ".renew(")) {
				n++
				break
			}
		}
	}
	return n
}

func TestReloadsLeakNoRenewalGoroutine(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	mount, roleID := appRole(t, e, map[string]any{"token_ttl": "1h"})
	e.vaultAuth = fmt.Sprintf("approle {\n role_id %s\n secret_id %s\n mount %s\n }", roleID, secretID(t, e, mount, false), mount)
	e.nc.AddUser("alice", "", alicePW)
	for i := range 5 {
		e.load(e.caddyfile(fmt.Sprintf("rate_limit %d 1h", 10+i)))
		// The first Vault request logs in and starts one watcher.
		e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 200,
			`{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`)
		if n := watchers(); n != 1 {
			t.Fatalf("after reload %d: %d renewal goroutines, want 1", i, n)
		}
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := watchers(); n != 0 {
		t.Fatalf("after stop: %d renewal goroutines", n)
	}
}

// forbidden reports Vault's 403.
func forbidden(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}
