// Package vaultkv keeps the app_password handler's records in HashiCorp
// Vault's KV secrets engine (v1 or v2), in the layout the Nextcloud MCP
// server reads: one secret per user at <mount>/<path_prefix>/<user_id>.
// It owns the Vault client (built from VAULT_* and the config), its token
// (token, token_file, AppRole, Kubernetes; renewal and re-login), the
// check-and-set writes, and the checks of `caddy app-password check`.
//
// It knows nothing of Caddy's HTTP packages or of the handler: metrics go
// through an observer the handler passes in.
package vaultkv

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Defaults of Config, as docs/API.md gives them.
const (
	DefaultMount      = "secret"
	DefaultPathPrefix = "nextcloud-mcp/app-passwords"
	DefaultKVVersion  = 2
	DefaultTimeout    = 10 * time.Second
	DefaultMaxRetries = 2
	// defaultServiceAccountTokenPath is where Kubernetes mounts a pod's
	// token.
	defaultServiceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// Config says where and how secrets are stored: the `vault` block of
// app_password.
type Config struct {
	// Vault address. Default: VAULT_ADDR. One of the two is required.
	Address string `json:"address,omitempty"`
	// Token; placeholders such as {env.VAULT_TOKEN} are replaced at
	// provisioning. Default: VAULT_TOKEN.
	Token string `json:"token,omitempty"`
	// Namespace (Vault Enterprise / HCP). Default: VAULT_NAMESPACE.
	Namespace string `json:"namespace,omitempty"`
	// Mount path of the KV engine. Default: secret
	Mount string `json:"mount,omitempty"`
	// Path of the users' secrets below the mount. Default:
	// nextcloud-mcp/app-passwords
	PathPrefix string `json:"path_prefix,omitempty"`
	// KV engine version, 1 or 2. Default: 2
	KVVersion int `json:"kv_version,omitempty"`
	// Timeout of one Vault request. Default: 10s
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Retries of a request that failed with a 5xx or a network error.
	// Default: 2. Set -1 for none.
	MaxRetries int `json:"max_retries,omitempty"`

	// File holding the token, as a Vault Agent sink writes it. Re-read
	// when it changes.
	TokenFile string `json:"token_file,omitempty"`
	// AppRole login.
	AppRole *AppRoleConfig `json:"approle,omitempty"`
	// Kubernetes service-account login.
	Kubernetes *KubernetesConfig `json:"kubernetes,omitempty"`

	// PEM file of the CA that signed Vault's certificate. Default:
	// VAULT_CACERT.
	CACert string `json:"ca_cert,omitempty"`
	// Directory of PEM CA files. Default: VAULT_CAPATH.
	CAPath string `json:"ca_path,omitempty"`
	// Client certificate and key for mTLS. Default: VAULT_CLIENT_CERT,
	// VAULT_CLIENT_KEY.
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
	// Name to verify Vault's certificate against. Default:
	// VAULT_TLS_SERVER_NAME.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// Skip TLS verification. For labs only.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// AppRoleConfig is an AppRole login: a role id and a secret id.
type AppRoleConfig struct {
	// Role id, or a file holding it.
	RoleID     string `json:"role_id,omitempty"`
	RoleIDFile string `json:"role_id_file,omitempty"`
	// Secret id: literal, in a file (re-read at each login), or in an
	// environment variable. Exactly one.
	SecretID     string `json:"secret_id,omitempty"`
	SecretIDFile string `json:"secret_id_file,omitempty"`
	SecretIDEnv  string `json:"secret_id_env,omitempty"`
	// The secret id is a response-wrapping token to unwrap first.
	Wrapped bool `json:"wrapped,omitempty"`
	// Mount path of the auth method. Default: approle
	Mount string `json:"mount,omitempty"`
}

// KubernetesConfig is a Kubernetes service-account login.
type KubernetesConfig struct {
	// Vault role to log in as. Required.
	Role string `json:"role,omitempty"`
	// Service-account token file. Default:
	// /var/run/secrets/kubernetes.io/serviceaccount/token
	TokenPath string `json:"token_path,omitempty"`
	// Mount path of the auth method. Default: kubernetes
	Mount string `json:"mount,omitempty"`
}

// SetDefaults fills in what the config leaves out, the auth methods'
// mounts included.
func (c *Config) SetDefaults() {
	if c.Mount == "" {
		c.Mount = DefaultMount
	}
	if c.PathPrefix == "" {
		c.PathPrefix = DefaultPathPrefix
	}
	if c.KVVersion == 0 {
		c.KVVersion = DefaultKVVersion
	}
	if c.Timeout == 0 {
		c.Timeout = caddy.Duration(DefaultTimeout)
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if ar := c.AppRole; ar != nil && ar.Mount == "" {
		ar.Mount = "approle"
	}
	if k := c.Kubernetes; k != nil {
		if k.TokenPath == "" {
			k.TokenPath = defaultServiceAccountTokenPath
		}
		if k.Mount == "" {
			k.Mount = "kubernetes"
		}
	}
}

// Validate checks the config after SetDefaults, naming the option at
// fault: the KV version, the timeout, and that one auth method is chosen
// and complete. The address is checked when the client is built, once
// placeholders and VAULT_ADDR are read.
func (c *Config) Validate() error {
	if c.KVVersion != 1 && c.KVVersion != 2 {
		return fmt.Errorf("kv_version must be 1 or 2, not %d", c.KVVersion)
	}
	if c.Timeout < 0 {
		return errors.New("timeout must be positive")
	}
	var chosen []string
	if c.Token != "" {
		chosen = append(chosen, "token")
	}
	if c.TokenFile != "" {
		chosen = append(chosen, "token_file")
	}
	if c.AppRole != nil {
		chosen = append(chosen, "approle")
	}
	if c.Kubernetes != nil {
		chosen = append(chosen, "kubernetes")
	}
	if len(chosen) > 1 {
		return errors.New("choose one auth method, not " + strings.Join(chosen, " and "))
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		return errors.New("client_cert and client_key go together")
	}
	if ar := c.AppRole; ar != nil {
		if (ar.RoleID == "") == (ar.RoleIDFile == "") {
			return errors.New("approle: give exactly one of role_id and role_id_file")
		}
		n := 0
		for _, s := range []string{ar.SecretID, ar.SecretIDFile, ar.SecretIDEnv} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			return errors.New("approle: give exactly one of secret_id, secret_id_file and secret_id_env")
		}
	}
	if k := c.Kubernetes; k != nil && k.Role == "" {
		return errors.New("kubernetes: role is required")
	}
	return nil
}
