package main

import (
	k8sauth "github.com/hashicorp/vault-plugin-auth-kubernetes"
	kv "github.com/hashicorp/vault-plugin-secrets-kv"
	"github.com/hashicorp/vault/builtin/credential/approle"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// registry is the builtin-plugin catalog of this small server: only the
// backends it links in. Vault's own catalog (helper/builtinplugins) pulls in
// every plugin and does not compile against the published sdk.
type registry struct{}

var (
	credentialPlugins = map[string]logical.Factory{"approle": approle.Factory, "kubernetes": k8sauth.Factory}
	secretsPlugins    = map[string]logical.Factory{"kv": kv.Factory}
)

func (registry) plugins(t consts.PluginType) map[string]logical.Factory {
	switch t {
	case consts.PluginTypeCredential:
		return credentialPlugins
	case consts.PluginTypeSecrets:
		return secretsPlugins
	}
	return nil
}

func (r registry) Contains(name string, t consts.PluginType) bool {
	_, ok := r.plugins(t)[name]
	return ok
}

func (r registry) Get(name string, t consts.PluginType) (func() (interface{}, error), bool) {
	f, ok := r.plugins(t)[name]
	if !ok {
		return nil, false
	}
	return func() (interface{}, error) { return f, nil }, true
}

func (r registry) Keys(t consts.PluginType) []string {
	var keys []string
	for k := range r.plugins(t) {
		keys = append(keys, k)
	}
	return keys
}

func (registry) DeprecationStatus(name string, t consts.PluginType) (consts.DeprecationStatus, bool) {
	return consts.Supported, true
}

func (registry) IsBuiltinEntPlugin(string, consts.PluginType) bool { return false }
