package vaultkv

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// Check is the outcome of one check of `caddy app-password check`.
type Check struct {
	Name string
	OK   string // what was found, when it passed
	Err  error  // why it failed
}

// Checks checks what the store needs, in the order a request needs it:
// Vault reachable and unsealed, the token valid (logging in first for
// AppRole and Kubernetes), and the token's policy granting every
// capability the store uses on its path: a user's secret, and LIST of the
// prefix (List). also names secrets below the prefix that the caller
// keeps beside the users' (the sweep's lease, "_sweep/lease"), which need
// create, read and update. The capabilities are checked only with a valid
// token.
func (s *Store) Checks(ctx context.Context, also ...string) []Check {
	client := s.client
	var results []Check

	health, err := client.Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		results = append(results, Check{Name: "vault reachable", Err: fmt.Errorf("%s: %s", client.Address(), vaultError(err))})
	case health.Sealed || !health.Initialized:
		results = append(results, Check{Name: "vault reachable", Err: fmt.Errorf("%s: sealed or not initialized", client.Address())})
	default:
		results = append(results, Check{Name: "vault reachable", OK: fmt.Sprintf("%s (Vault %s, unsealed)", client.Address(), health.Version)})
	}

	if _, err := s.auth.ensure(ctx); err != nil {
		return append(results, Check{Name: "vault token", Err: err})
	}
	sec, err := client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return append(results, Check{Name: "vault token", Err: fmt.Errorf("%s: %s", s.auth.method, vaultError(err))})
	}
	ttl, _ := sec.TokenTTL()
	policies, _ := sec.TokenPolicies()
	what := "no expiry"
	if ttl > 0 {
		what = "expires in " + ttl.String()
	}
	results = append(results, Check{Name: "vault token", OK: fmt.Sprintf("%s, %s, policies %s", s.auth.method, what, strings.Join(policies, ","))})
	return append(results, s.checkCapabilities(ctx, also))
}

// neededCapabilities lists, per Vault API path, what the store does
// there: on a user's secret, on the prefix (LIST, whose path ends in "/"),
// and on the secrets in also. It is the policy of vault/policy.hcl, in
// code.
func (s *Store) neededCapabilities(userID string, also []string) map[string][]string {
	p := s.secretPath(userID)
	var needed map[string][]string
	if s.version == 1 {
		needed = map[string][]string{
			path.Join(s.mount, p):              {"create", "read", "update", "delete"},
			path.Join(s.mount, s.prefix) + "/": {"list"},
		}
		for _, a := range also {
			needed[path.Join(s.mount, s.prefix, a)] = []string{"create", "read", "update"}
		}
		return needed
	}
	needed = map[string][]string{
		path.Join(s.mount, "data", p):                  {"create", "read", "update"},
		path.Join(s.mount, "destroy", p):               {"update"},
		path.Join(s.mount, "metadata", p):              {"delete"},
		path.Join(s.mount, "metadata", s.prefix) + "/": {"list"},
	}
	for _, a := range also {
		needed[path.Join(s.mount, "data", s.prefix, a)] = []string{"create", "read", "update"}
	}
	return needed
}

// checkCapabilities asks Vault what the token may do on the paths the
// store uses (sys/capabilities-self) and names whatever is missing.
func (s *Store) checkCapabilities(ctx context.Context, also []string) Check {
	const name = "vault capabilities"
	needed := s.neededCapabilities("caddy-apppw-check", also)
	paths := slices.Sorted(maps.Keys(needed))
	var missing []string
	for _, p := range paths {
		caps, err := s.client.Sys().CapabilitiesSelfWithContext(ctx, p)
		if err != nil {
			return Check{Name: name, Err: fmt.Errorf("%s: %s", p, vaultError(err))}
		}
		if slices.Contains(caps, "root") {
			continue
		}
		for _, c := range needed[p] {
			if !slices.Contains(caps, c) {
				missing = append(missing, c+" on "+p)
			}
		}
	}
	if len(missing) > 0 {
		return Check{Name: name, Err: fmt.Errorf("missing %s", strings.Join(missing, ", "))}
	}
	return Check{Name: name, OK: "every capability the module uses on " + path.Join(s.mount, s.prefix)}
}
