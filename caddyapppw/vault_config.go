package caddyapppw

import (
	"errors"
	"strings"
)

// defaultServiceAccountTokenPath is where Kubernetes mounts a pod's token.
const defaultServiceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// checkAuth makes sure one auth method is chosen and complete, and fills
// in the mounts' defaults.
func (v *VaultConfig) checkAuth() error {
	var chosen []string
	if v.Token != "" {
		chosen = append(chosen, "token")
	}
	if v.TokenFile != "" {
		chosen = append(chosen, "token_file")
	}
	if v.AppRole != nil {
		chosen = append(chosen, "approle")
	}
	if v.Kubernetes != nil {
		chosen = append(chosen, "kubernetes")
	}
	if len(chosen) > 1 {
		return errors.New("choose one auth method, not " + strings.Join(chosen, " and "))
	}
	if (v.ClientCert == "") != (v.ClientKey == "") {
		return errors.New("client_cert and client_key go together")
	}

	if ar := v.AppRole; ar != nil {
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
		if ar.Mount == "" {
			ar.Mount = "approle"
		}
	}
	if k := v.Kubernetes; k != nil {
		if k.Role == "" {
			return errors.New("kubernetes: role is required")
		}
		if k.TokenPath == "" {
			k.TokenPath = defaultServiceAccountTokenPath
		}
		if k.Mount == "" {
			k.Mount = "kubernetes"
		}
	}
	return nil
}
