package caddyapppw

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "app-password",
		Short: "Commands of the app_password module",
		CobraFunc: func(cmd *cobra.Command) {
			check := &cobra.Command{
				Use:   "check --config <path> [--adapter <name>]",
				Short: "Checks that each app_password handler can reach Vault and Nextcloud",
				Long: `
Loads a config (Caddyfile or JSON) and, for each app_password handler in it,
checks that Vault is reachable and unsealed, that its token is valid (logging
in first for AppRole and Kubernetes), that the token's policy grants every
capability the module uses on its path, and that Nextcloud answers its
status endpoint. Prints one line per check; exits 1 if any check fails.`,
				RunE: func(cmd *cobra.Command, _ []string) error {
					configFile, _ := cmd.Flags().GetString("config")
					adapter, _ := cmd.Flags().GetString("adapter")
					ok, err := runCheck(cmd.Context(), cmd.OutOrStdout(), configFile, adapter)
					if err != nil {
						return err
					}
					if !ok {
						os.Exit(1)
					}
					return nil
				},
			}
			check.Flags().StringP("config", "c", "", "Configuration file (default: ./Caddyfile)")
			check.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			cmd.AddCommand(check)
		},
	})
}

// runCheck loads a config and checks each app_password handler in it. It
// reports whether every check passed.
func runCheck(ctx context.Context, out io.Writer, configFile, adapter string) (bool, error) {
	cfg, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return false, err
	}
	var raw any
	if err := json.Unmarshal(cfg, &raw); err != nil {
		return false, err
	}
	handlers := findHandlers(raw, nil)
	if len(handlers) == 0 {
		return false, fmt.Errorf("no app_password handler in %s", configFile)
	}
	allOK := true
	for i, hj := range handlers {
		fmt.Fprintf(out, "app_password handler %d of %d\n", i+1, len(handlers))
		var h Handler
		if err := json.Unmarshal(hj, &h); err != nil {
			return false, err
		}
		cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
		err := h.Provision(cctx)
		if err == nil {
			err = h.Validate()
		}
		if err != nil {
			cancel()
			fmt.Fprintf(out, "FAIL config: %v\n", err)
			allOK = false
			continue
		}
		for _, r := range h.check(cctx) {
			status := "ok  "
			if r.err != nil {
				status, allOK = "FAIL", false
			}
			fmt.Fprintf(out, "%s %s: %s\n", status, r.name, r.detail())
		}
		_ = h.Cleanup()
		cancel()
	}
	return allOK, nil
}

// findHandlers walks a JSON config and returns every object whose
// "handler" is app_password, in subroutes too.
func findHandlers(v any, acc []json.RawMessage) []json.RawMessage {
	switch t := v.(type) {
	case map[string]any:
		if t["handler"] == "app_password" {
			b, _ := json.Marshal(t)
			return append(acc, b)
		}
		for _, k := range slices.Sorted(maps.Keys(t)) {
			acc = findHandlers(t[k], acc)
		}
	case []any:
		for _, e := range t {
			acc = findHandlers(e, acc)
		}
	}
	return acc
}

// checkResult is the outcome of one check.
type checkResult struct {
	name string
	ok   string // what was found, when it passed
	err  error
}

func (r checkResult) detail() string {
	if r.err != nil {
		return r.err.Error()
	}
	return r.ok
}

// check runs the checks of one provisioned handler, in the order a
// request would need them.
func (h *Handler) check(ctx context.Context) []checkResult {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(h.Vault.Timeout)+time.Duration(h.Nextcloud.Timeout))
	defer cancel()
	store := h.store.(*kvStore)
	client := store.client
	var results []checkResult

	health, err := client.Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		results = append(results, checkResult{name: "vault reachable", err: fmt.Errorf("%s: %s", client.Address(), vaultError(err))})
	case health.Sealed || !health.Initialized:
		results = append(results, checkResult{name: "vault reachable", err: fmt.Errorf("%s: sealed or not initialized", client.Address())})
	default:
		results = append(results, checkResult{name: "vault reachable", ok: fmt.Sprintf("%s (Vault %s, unsealed)", client.Address(), health.Version)})
	}

	tokenOK := false
	if _, err := h.vaultAuth.ensure(ctx); err != nil {
		results = append(results, checkResult{name: "vault token", err: err})
	} else if sec, err := client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		results = append(results, checkResult{name: "vault token", err: fmt.Errorf("%s: %s", h.vaultAuth.method, vaultError(err))})
	} else {
		ttl, _ := sec.TokenTTL()
		policies, _ := sec.TokenPolicies()
		what := "no expiry"
		if ttl > 0 {
			what = "expires in " + ttl.String()
		}
		results = append(results, checkResult{name: "vault token", ok: fmt.Sprintf("%s, %s, policies %s", h.vaultAuth.method, what, strings.Join(policies, ","))})
		tokenOK = true
	}

	if tokenOK {
		results = append(results, store.checkCapabilities(ctx))
	}
	results = append(results, h.checkNextcloudStatus(ctx))
	return results
}

// neededCapabilities lists, per Vault API path of a user's secret, what the
// module does there. It is the policy of vault/policy.hcl, in code.
func (s *kvStore) neededCapabilities(userID string) map[string][]string {
	p := s.secretPath(userID)
	if s.version == 1 {
		return map[string][]string{path.Join(s.mount, p): {"create", "read", "update", "delete"}}
	}
	return map[string][]string{
		path.Join(s.mount, "data", p):     {"create", "read", "update"},
		path.Join(s.mount, "destroy", p):  {"update"},
		path.Join(s.mount, "metadata", p): {"delete"},
	}
}

// checkCapabilities asks Vault what the token may do on the paths of a
// user's secret (sys/capabilities-self) and names whatever is missing.
func (s *kvStore) checkCapabilities(ctx context.Context) checkResult {
	const name = "vault capabilities"
	needed := s.neededCapabilities("caddy-apppw-check")
	paths := slices.Sorted(maps.Keys(needed))
	var missing []string
	for _, p := range paths {
		caps, err := s.client.Sys().CapabilitiesSelfWithContext(ctx, p)
		if err != nil {
			return checkResult{name: name, err: fmt.Errorf("%s: %s", p, vaultError(err))}
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
		return checkResult{name: name, err: fmt.Errorf("missing %s", strings.Join(missing, ", "))}
	}
	return checkResult{name: name, ok: "every capability the module uses on " + path.Join(s.mount, s.prefix)}
}

// checkNextcloudStatus asks Nextcloud's unauthenticated status.php, with
// the handler's own client (so its TLS settings are the ones tested).
func (h *Handler) checkNextcloudStatus(ctx context.Context) checkResult {
	const name = "nextcloud reachable"
	base := strings.TrimSuffix(h.nextcloud.endpoint, ocsUserPath)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/status.php", nil)
	if err != nil {
		return checkResult{name: name, err: err}
	}
	resp, err := h.nextcloud.client.Do(req)
	if err != nil {
		return checkResult{name: name, err: fmt.Errorf("%s: %v", base, redactURLError(err))}
	}
	defer resp.Body.Close()
	var status struct {
		Installed     bool   `json:"installed"`
		Maintenance   bool   `json:"maintenance"`
		VersionString string `json:"versionstring"`
	}
	if resp.StatusCode != http.StatusOK {
		return checkResult{name: name, err: fmt.Errorf("%s/status.php answered HTTP %d", base, resp.StatusCode)}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxOCSBody)).Decode(&status); err != nil {
		return checkResult{name: name, err: fmt.Errorf("%s/status.php is not Nextcloud's status: %v", base, err)}
	}
	switch {
	case !status.Installed:
		return checkResult{name: name, err: fmt.Errorf("%s: Nextcloud is not installed", base)}
	case status.Maintenance:
		return checkResult{name: name, err: fmt.Errorf("%s: Nextcloud is in maintenance mode", base)}
	}
	return checkResult{name: name, ok: fmt.Sprintf("%s (Nextcloud %s)", base, status.VersionString)}
}
