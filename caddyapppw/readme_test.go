package caddyapppw

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/readme"
)

// README.md promises what its blocks show. These tests take each block
// as printed, by its fence: every ```caddyfile block is adapted, loaded
// into a running Caddy (so a value refused at provisioning fails) and used
// for a provisioning; the ```sh block that sets up Vault runs against the
// dev Vault. The other ```sh blocks are e2e's TestREADMECommands.

// readmeCaddyfiles names README.md's Caddyfile blocks in their order. A
// block added, removed or moved fails TestREADMESnippets until it is
// named here, so none is ever skipped without a reason.
var readmeCaddyfiles = []string{"audit", "syntax", "token", "token", "token_file", "approle", "kubernetes", "delivery", "sweep", "redis", "balancer", "sentinel"}

// caddyfileKind tells what a README Caddyfile block shows.
func caddyfileKind(text string) string {
	switch {
	case strings.HasPrefix(text, "app_password [<matcher>]"):
		return "syntax" // the syntax summary: placeholders, not a config
	case strings.Contains(text, "deliver_to_mcp"):
		return "delivery"
	case strings.Contains(text, "sweep {"):
		return "sweep"
	case strings.Contains(text, "log audit"):
		return "audit"
	case strings.Contains(text, "token_file "):
		return "token_file"
	case strings.Contains(text, "approle {"):
		return "approle"
	case strings.Contains(text, "kubernetes "):
		return "kubernetes"
	case strings.Contains(text, "health_uri /v1/sys/health"):
		return "balancer"
	case strings.Contains(text, "sentinel "):
		return "sentinel"
	case strings.Contains(text, "redis "):
		return "redis"
	case strings.Contains(text, "token {env.VAULT_TOKEN}"):
		return "token"
	}
	return "unknown"
}

func readmeBlocks(t *testing.T, lang string) []readme.Block {
	t.Helper()
	all, err := readme.Load("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []readme.Block
	for _, b := range all {
		if b.Lang == lang {
			out = append(out, b)
		}
	}
	return out
}

// readmeVaultSetup is README.md's one ```sh block that sets up Vault.
func readmeVaultSetup(t *testing.T) readme.Block {
	t.Helper()
	var found []readme.Block
	for _, b := range readmeBlocks(t, "sh") {
		if strings.Contains(b.Text, "/v1/sys/policies/acl/") {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md has %d ```sh blocks that write Vault policies, want 1", len(found))
	}
	return found[0]
}

// readmeWorld is what the README's blocks meet in these tests: the dev
// Vault over TLS, set up by the README's own commands, a fake Nextcloud,
// and a Kubernetes TokenReview API over TLS.
type readmeWorld struct {
	pki      *testPKI
	vault    *devvault.Server
	nc       *fakenextcloud.Server
	etc      string // CADDY_ETC: where the setup writes the AppRole files
	k8sURL   string
	k8sToken string // the service-account token the TokenReview API approves
}

func newReadmeWorld(t *testing.T) *readmeWorld {
	t.Helper()
	pki := newTestPKI(t)
	w := &readmeWorld{pki: pki, nc: fakenextcloud.New(t), etc: t.TempDir()}
	w.vault = tlsVault(t, pki, pki.serverCert, pki.serverKey)
	w.vault.Root = pki.rootClient(t, w.vault, "", "")

	// Kubernetes' TokenReview, approving the service account "caddy" of
	// namespace "mcp", as the README's role binds.
	w.k8sToken = fakeServiceAccountJWT("caddy", "mcp", "uid-caddy")
	k8s := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var review struct {
			Spec struct {
				Token string `json:"token"`
			} `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&review)
		status := map[string]any{"authenticated": false}
		if r.URL.Path == "/apis/authentication.k8s.io/v1/tokenreviews" && review.Spec.Token == w.k8sToken {
			status = map[string]any{"authenticated": true, "user": map[string]any{
				"username": "system:serviceaccount:mcp:caddy", "uid": "uid-caddy",
				"groups": []string{"system:serviceaccounts", "system:serviceaccounts:mcp"},
			}}
		}
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(map[string]any{"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "status": status})
	}))
	k8s.TLS = pki.serverTLS(t)
	k8s.StartTLS()
	t.Cleanup(k8s.Close)
	w.k8sURL = k8s.URL
	return w
}

// runSetup runs the README's Vault setup block as printed, from the
// checkout's root, with the variables it names; -e and pipefail make any
// failing command fail the test.
func (w *readmeWorld) runSetup(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the README's Vault setup needs bash, curl and jq (apt-get install curl jq)", tool)
		}
	}
	block := readmeVaultSetup(t)
	cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", block.Text)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+w.vault.Addr, "VAULT_TOKEN="+w.vault.Token, "VAULT_CACERT="+w.pki.caCert,
		"CADDY_ETC="+w.etc, "K8S_HOST="+w.k8sURL, "K8S_CA_CERT="+w.pki.caCert)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README.md line %d, the Vault setup: %v\n%s", block.Line, err, out)
	}
}

func TestREADMEVaultSetup(t *testing.T) {
	needsVault(t)
	w := newReadmeWorld(t)
	w.runSetup(t)
	ctx := t.Context()

	for name, file := range map[string]string{"caddy-apppw": "policy.hcl", "nextcloud-mcp": "mcp-server-policy.hcl"} {
		want, err := os.ReadFile(filepath.Join("..", "vault", file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := w.vault.Root.Sys().GetPolicyWithContext(ctx, name)
		if err != nil || got != string(want) {
			t.Fatalf("policy %s in Vault is %q (%v), want vault/%s", name, got, err, file)
		}
	}

	roleID, err := os.ReadFile(filepath.Join(w.etc, "vault-role-id"))
	if err != nil {
		t.Fatal(err)
	}
	secretID, err := os.ReadFile(filepath.Join(w.etc, "vault-secret-id"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(w.etc, "vault-secret-id")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("vault-secret-id: %v %v, want mode 0600", fi.Mode(), err)
	}
	sec, err := w.vault.Root.Logical().ReadWithContext(ctx, "auth/approle/role/caddy-apppw/role-id")
	if err != nil || strings.TrimSpace(string(roleID)) != sec.Data["role_id"] {
		t.Fatalf("vault-role-id holds %q, Vault says %v (%v)", roleID, sec, err)
	}

	// The files log in, to a token with the module's policy and the TTLs
	// the README gives.
	login := func(path string, data map[string]any) *api.Secret {
		t.Helper()
		c, err := w.vault.Root.Clone()
		if err != nil {
			t.Fatal(err)
		}
		c.ClearToken()
		sec, err := c.Logical().WriteWithContext(ctx, path, data)
		if err != nil {
			t.Fatalf("login at %s: %v", path, err)
		}
		return sec
	}
	sec = login("auth/approle/login", map[string]any{"role_id": strings.TrimSpace(string(roleID)), "secret_id": strings.TrimSpace(string(secretID))})
	if !slices.Equal(sec.Auth.TokenPolicies, []string{"caddy-apppw", "default"}) || sec.Auth.LeaseDuration != 3600 {
		t.Fatalf("AppRole token: policies %v, TTL %d s", sec.Auth.TokenPolicies, sec.Auth.LeaseDuration)
	}
	role, err := w.vault.Root.Logical().ReadWithContext(ctx, "auth/approle/role/caddy-apppw")
	if err != nil || role.Data["token_max_ttl"] != json.Number("86400") {
		t.Fatalf("AppRole role: %v (%v)", role, err)
	}

	// Kubernetes: the service account the role binds logs in, through
	// the TokenReview API at K8S_HOST, verified with K8S_CA_CERT.
	sec = login("auth/kubernetes/login", map[string]any{"role": "caddy-apppw", "jwt": w.k8sToken})
	if !slices.Equal(sec.Auth.TokenPolicies, []string{"caddy-apppw", "default"}) || sec.Auth.LeaseDuration != 3600 {
		t.Fatalf("Kubernetes token: policies %v, TTL %d s", sec.Auth.TokenPolicies, sec.Auth.LeaseDuration)
	}
}

// jsonWalk calls f on every string in a decoded JSON value and stores
// what f returns in its place.
func jsonWalk(v any, f func(string) string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonWalk(e, f)
		}
	case []any:
		for i, e := range x {
			x[i] = jsonWalk(e, f)
		}
	case string:
		return f(x)
	}
	return v
}

// jsonObjects calls f on every object in a decoded JSON value.
func jsonObjects(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(x)
		for _, e := range x {
			jsonObjects(e, f)
		}
	case []any:
		for _, e := range x {
			jsonObjects(e, f)
		}
	}
}

// TestREADMESnippets loads every Caddyfile block of README.md into Caddy
// and provisions an app password through each. The block's text is
// adapted as printed; in the JSON only what names the README's machines
// changes: the listener (loopback, no automatic HTTPS, no admin API), and
// each address and file path in the table below, which must all be used.
// Placeholders keep their form and are given values in the environment.
func TestREADMESnippets(t *testing.T) {
	needsVault(t)
	blocks := readmeBlocks(t, "caddyfile")
	var kinds []string
	for _, b := range blocks {
		kinds = append(kinds, caddyfileKind(b.Text))
	}
	if !slices.Equal(kinds, readmeCaddyfiles) {
		t.Fatalf("README.md's Caddyfile blocks are %v, the test knows %v: name each block in readmeCaddyfiles", kinds, readmeCaddyfiles)
	}

	w := newReadmeWorld(t)
	w.runSetup(t)
	dir := t.TempDir()
	tokenFile, k8sTokenFile, auditFile := filepath.Join(dir, "vault-token"), filepath.Join(dir, "k8s-token"), filepath.Join(dir, "audit.log")
	if err := os.WriteFile(tokenFile, []byte(w.vault.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k8sTokenFile, []byte(w.k8sToken), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_TOKEN", w.vault.Token)
	t.Setenv("REDIS_PASSWORD", "not-needed-redis-is-absent")
	// The snippets without ca_cert meet the test CA the way the README
	// says an operator's Caddy can: through VAULT_CACERT.
	t.Setenv(api.EnvVaultCACert, w.pki.caCert)

	// The MCP server behind every block; with deliver_to_mcp, the change
	// is delivered to its app-password route.
	mcp := fakemcp.New(t, w.nc.URL)

	// The README's machines and files, and the test's.
	replace := map[string]string{
		"nextcloud-mcp:8000":                    mcp.Listener.Addr().String(),
		"https://cloud.example.com":             w.nc.URL,
		"https://vault.example.com:8200":        w.vault.Addr,
		"https://vault.vault.svc:8200":          w.vault.Addr,
		"/run/vault-agent/token":                tokenFile,
		"/etc/caddy/vault-role-id":              filepath.Join(w.etc, "vault-role-id"),
		"/etc/caddy/vault-secret-id":            filepath.Join(w.etc, "vault-secret-id"),
		"/var/run/secrets/vault/ca.pem":         w.pki.caCert,
		"/var/log/caddy/app-password-audit.log": auditFile,
	}
	used := map[string]bool{}
	t.Cleanup(func() { _ = caddy.Stop() })

	var audit readme.Block
	for i, b := range blocks {
		kind := kinds[i]
		switch kind {
		case "syntax":
			// Not a config (<placeholders>); TestCaddyfileOptions parses
			// each of its options.
			continue
		case "audit":
			// Global options only: loaded with the next site block, whose
			// provisioning it must then record.
			audit = b
			continue
		case "balancer":
			// Vault's load balancer, in front of a cluster this test does
			// not have: TestVaultClusterActiveNodeKilled runs it, as
			// printed, in front of three Vault nodes.
			continue
		}
		text := b.Text
		if audit.Text != "" {
			text = audit.Text + "\n" + text
		}
		cfg := map[string]any{}
		if err := json.Unmarshal(adapt(t, text), &cfg); err != nil {
			t.Fatal(err)
		}
		cfg = jsonWalk(cfg, func(s string) string {
			if r, ok := replace[s]; ok {
				used[s] = true
				return r
			}
			return s
		}).(map[string]any)
		port := freePort(t)
		cfg["admin"] = map[string]any{"disabled": true}
		jsonObjects(cfg["apps"].(map[string]any)["http"], func(o map[string]any) {
			if _, ok := o["listen"]; ok {
				o["listen"] = []any{fmt.Sprintf("127.0.0.1:%d", port)}
				o["automatic_https"] = map[string]any{"disable": true}
			}
		})
		if kind == "kubernetes" {
			// The default token_path is the pod's; this test's is a file.
			jsonObjects(cfg, func(o map[string]any) {
				if k, ok := o["kubernetes"].(map[string]any); ok {
					k["token_path"] = k8sTokenFile
				}
			})
		}
		raw, _ := json.Marshal(cfg)
		if err := caddy.Load(raw, true); err != nil {
			t.Fatalf("README.md line %d (%s): Caddy refuses the config: %v", b.Line, kind, err)
		}

		uid := fmt.Sprintf("readme%d", b.Line)
		w.nc.AddUser(uid, "", alicePW)
		status, body := readmeCall(t, port, uid)
		if want := `{"success":true,"message":"App password stored for ` + uid + `","scopes":null}`; status != 200 || body != want {
			t.Fatalf("README.md line %d (%s): POST answered %d %s", b.Line, kind, status, body)
		}
		sec, err := w.vault.Root.KVv2("secret").Get(t.Context(), "nextcloud-mcp/app-passwords/"+uid)
		if err != nil || sec.Data["app_password"] != alicePW {
			t.Fatalf("README.md line %d (%s): Vault holds %v (%v)", b.Line, kind, sec, err)
		}
		if row, ok := mcp.Get(uid); (kind == "delivery") != (ok && row.Password == alicePW) {
			t.Fatalf("README.md line %d (%s): the MCP server holds %+v (%v)", b.Line, kind, row, ok)
		}
		if audit.Text != "" {
			data, err := os.ReadFile(auditFile)
			if err != nil || !strings.Contains(string(data), `"logger":"http.handlers.app_password.audit"`) ||
				!strings.Contains(string(data), `"msg":"provisioning"`) || !strings.Contains(string(data), `"user_id":"`+uid+`"`) {
				t.Fatalf("README.md line %d (audit): the audit file holds %q (%v)", audit.Line, data, err)
			}
			audit = readme.Block{}
		}
	}
	for from := range replace {
		if !used[from] {
			t.Errorf("no README Caddyfile block names %s any more: update the test's table", from)
		}
	}
}

// readmeCall provisions uid's app password on the README's site, whose
// address is mcp.example.com.
func readmeCall(t *testing.T, port int, uid string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/v1/users/%s/app-password", port, uid), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "mcp.example.com"
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(uid+":"+alicePW)))
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
