package vaultkv

import (
	"testing"
	"time"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	c := Config{AppRole: &AppRoleConfig{RoleID: "r", SecretIDEnv: "S"}}
	c.SetDefaults()
	if c.Mount != DefaultMount || c.PathPrefix != DefaultPathPrefix || c.KVVersion != DefaultKVVersion ||
		time.Duration(c.Timeout) != DefaultTimeout || c.MaxRetries != DefaultMaxRetries || c.AppRole.Mount != "approle" {
		t.Fatalf("defaults: %+v %+v", c, c.AppRole)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	k := Config{Kubernetes: &KubernetesConfig{Role: "caddy"}}
	k.SetDefaults()
	if k.Kubernetes.TokenPath != defaultServiceAccountTokenPath || k.Kubernetes.Mount != "kubernetes" {
		t.Fatalf("kubernetes defaults: %+v", k.Kubernetes)
	}
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{KVVersion: 3}, "kv_version must be 1 or 2, not 3"},
		{Config{Timeout: -1}, "timeout must be positive"},
		{Config{Token: "t", TokenFile: "/f", Kubernetes: &KubernetesConfig{Role: "r"}}, "choose one auth method, not token and token_file and kubernetes"},
		{Config{ClientCert: "/c.pem"}, "client_cert and client_key go together"},
		{Config{AppRole: &AppRoleConfig{SecretID: "s"}}, "approle: give exactly one of role_id and role_id_file"},
		{Config{AppRole: &AppRoleConfig{RoleID: "r", SecretID: "s", SecretIDFile: "/f"}}, "approle: give exactly one of secret_id, secret_id_file and secret_id_env"},
		{Config{Kubernetes: &KubernetesConfig{}}, "kubernetes: role is required"},
	} {
		tc.c.SetDefaults()
		if err := tc.c.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: error %v, want %q", tc.c, err, tc.want)
		}
	}
}
