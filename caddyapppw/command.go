package caddyapppw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
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
			cmd.AddCommand(checkCommand())
		},
	})
}

// checkCommand is `caddy app-password check`.
func checkCommand() *cobra.Command {
	check := &cobra.Command{
		Use:   "check --config <path> [--adapter <name>]",
		Short: "Checks that each app_password handler can reach Vault and Nextcloud",
		Long: `
Loads a config (Caddyfile or JSON) and, for each app_password handler in it,
checks that Vault is reachable and unsealed, that its token is valid (logging
in first for AppRole and Kubernetes), that the token's policy grants every
capability the module uses on its path, and that Nextcloud answers its
status endpoint. Prints one line per check; exits 1 if any check fails.`,
	}
	check.Flags().StringP("config", "c", "", "Configuration file (default: ./Caddyfile)")
	check.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
	// As Caddy's own commands: the function returns the exit code and
	// caddycmd.Main exits with it, after deferred cleanups have run.
	check.RunE = caddycmd.WrapCommandFuncForCobra(cmdCheck)
	return check
}

// cmdCheck runs the checks and returns the command's exit code: 0 when
// every check passed, 1 (with an error, which is what makes caddycmd exit
// non-zero) when one failed or the config could not be loaded.
func cmdCheck(fl caddycmd.Flags) (int, error) {
	ok, err := runCheck(context.Background(), os.Stdout, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if !ok {
		return caddy.ExitCodeFailedStartup, errors.New("app-password check: a check failed")
	}
	return caddy.ExitCodeSuccess, nil
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
// request would need them: the store's, then Nextcloud's.
func (h *Handler) check(ctx context.Context) []checkResult {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(h.Vault.Timeout)+time.Duration(h.Nextcloud.Timeout))
	defer cancel()
	var results []checkResult
	if h.vault == nil {
		results = append(results, checkResult{name: "vault", err: errors.New("the handler uses no Vault store")})
	} else {
		for _, c := range h.vault.Checks(ctx) {
			results = append(results, checkResult{name: c.Name, ok: c.OK, err: c.Err})
		}
	}
	return append(results, h.checkNextcloudStatus(ctx))
}

// checkNextcloudStatus asks Nextcloud's unauthenticated status.php, with
// the handler's own client (so its TLS settings are the ones tested).
func (h *Handler) checkNextcloudStatus(ctx context.Context) checkResult {
	const name = "nextcloud reachable"
	version, err := h.nextcloud.Status(ctx)
	if err != nil {
		return checkResult{name: name, err: err}
	}
	return checkResult{name: name, ok: fmt.Sprintf("%s (Nextcloud %s)", h.nextcloud.BaseURL(), version)}
}
