package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// writeConfig writes text to a file named name in a directory of the
// test's own and returns its path.
func writeConfig(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// site is a Caddyfile site with an app_password handler whose vault block
// holds the lines given.
func site(addr, vault string) string {
	return addr + ` {
	app_password {
		nextcloud https://cloud.example.com
		vault https://vault.example.com:8200 {
			` + vault + `
		}
	}
	reverse_proxy 127.0.0.1:8000
}
`
}

// The vault block reaches vaultkv.Config as the handler sees it: every
// auth method's options, TLS, KV layout, defaults filled in.
func TestVaultConfigFromCaddyfile(t *testing.T) {
	approle := `approle {
				role_id_file /run/secrets/role-id
				secret_id_env VAULT_SECRET_ID
				wrapped
				mount auth-approle
			}
			namespace team-a
			mount kv
			path_prefix mcp/pw
			kv_version 1
			timeout 3s
			ca_cert /etc/ssl/vault-ca.pem
			tls_server_name vault.internal`
	for _, tc := range []struct {
		name, file, adapter, text string
		want                      vaultkv.Config
	}{
		{"approle", "Caddyfile", "", site("mcp.example.com", approle), vaultkv.Config{
			Address: "https://vault.example.com:8200", Namespace: "team-a", Mount: "kv", PathPrefix: "mcp/pw", KVVersion: 1,
			Timeout: caddy.Duration(3 * time.Second), MaxRetries: vaultkv.DefaultMaxRetries,
			AppRole: &vaultkv.AppRoleConfig{RoleIDFile: "/run/secrets/role-id", SecretIDEnv: "VAULT_SECRET_ID", Wrapped: true, Mount: "auth-approle"},
			CACert:  "/etc/ssl/vault-ca.pem", TLSServerName: "vault.internal",
		}},
		{"kubernetes, file named for the adapter flag", "caddy.conf", "caddyfile", site("mcp.example.com", "kubernetes caddy"), vaultkv.Config{
			Address: "https://vault.example.com:8200", Mount: vaultkv.DefaultMount, PathPrefix: vaultkv.DefaultPathPrefix,
			KVVersion: 2, Timeout: caddy.Duration(vaultkv.DefaultTimeout), MaxRetries: vaultkv.DefaultMaxRetries,
			Kubernetes: &vaultkv.KubernetesConfig{Role: "caddy", TokenPath: "/var/run/secrets/kubernetes.io/serviceaccount/token", Mount: "kubernetes"},
		}},
		{"token file, two sites with the same vault", "site.caddyfile", "", site("a.example.com", "token_file /run/vault/token") + site("b.example.com", "token_file /run/vault/token"), vaultkv.Config{
			Address: "https://vault.example.com:8200", TokenFile: "/run/vault/token", Mount: vaultkv.DefaultMount, PathPrefix: vaultkv.DefaultPathPrefix,
			KVVersion: 2, Timeout: caddy.Duration(vaultkv.DefaultTimeout), MaxRetries: vaultkv.DefaultMaxRetries,
		}},
		{"JSON, no vault block: all from VAULT_*", "caddy.json", "", `{"apps":{"http":{"servers":{"s":{"listen":[":8080"],"routes":[{"handle":[
			{"handler":"subroute","routes":[{"handle":[{"handler":"app_password","nextcloud":{"url":"https://cloud.example.com"}}]}]}]}]}}}}}`, vaultkv.Config{
			Mount: vaultkv.DefaultMount, PathPrefix: vaultkv.DefaultPathPrefix,
			KVVersion: 2, Timeout: caddy.Duration(vaultkv.DefaultTimeout), MaxRetries: vaultkv.DefaultMaxRetries,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := vaultConfig(writeConfig(t, tc.file, tc.text), tc.adapter)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

// Which Vault to import into must be clear from the config.
func TestVaultConfigRefusals(t *testing.T) {
	for _, tc := range []struct{ name, file, text, want string }{
		{"no handler", "Caddyfile", "mcp.example.com {\n\treverse_proxy 127.0.0.1:8000\n}\n", "no app_password handler in it"},
		{"two vaults", "Caddyfile", site("a.example.com", "mount kv-a") + site("b.example.com", "mount kv-b"),
			"its 2 app_password handlers have different vault settings: give a config with the one to import into"},
		{"two auth methods", "Caddyfile", site("a.example.com", "token abc\n\t\t\ttoken_file /run/vault/token"),
			"app_password handler 1: vault: choose one auth method, not token and token_file"},
		{"not a config", "caddy.json", "mcp.example.com {\n}\n", "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := vaultConfig(writeConfig(t, tc.file, tc.text), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
