package caddyapppw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
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
			cmd.AddCommand(listCommand())
			cmd.AddCommand(sweepCommand())
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
	handlers, err := loadHandlers(configFile, adapter)
	if err != nil {
		return false, err
	}
	allOK := true
	for i, hj := range handlers {
		fmt.Fprintf(out, "app_password handler %d of %d\n", i+1, len(handlers))
		h, done, err := provisionForCommand(ctx, hj)
		if err != nil {
			fmt.Fprintf(out, "FAIL %v\n", err)
			allOK = false
			continue
		}
		for _, r := range h.check(ctx) {
			status := "ok  "
			if r.err != nil {
				status, allOK = "FAIL", false
			}
			fmt.Fprintf(out, "%s %s: %s\n", status, r.name, r.detail())
		}
		done()
	}
	return allOK, nil
}

// loadHandlers loads a config file, adapting it as `caddy run` would, and
// returns the JSON of each app_password handler in it.
func loadHandlers(configFile, adapter string) ([]json.RawMessage, error) {
	cfg, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return nil, err
	}
	var raw any
	if err := json.Unmarshal(cfg, &raw); err != nil {
		return nil, err
	}
	handlers := findHandlers(raw, nil)
	if len(handlers) == 0 {
		return nil, fmt.Errorf("no app_password handler in %s", configFile)
	}
	return handlers, nil
}

// provisionForCommand provisions one handler for a command, as Caddy
// would, but does not start its sweeper: a command uses the handler once.
// done lets go of it. An error is a config error, prefixed "config: ".
func provisionForCommand(ctx context.Context, raw json.RawMessage) (h *Handler, done func(), err error) {
	// Logged through Caddy's default logger (stderr), under the
	// module's name: the sweep's audit lines among them.
	h = &Handler{noSchedule: true, commandLogger: caddy.Log().Named("http.handlers.app_password")}
	if err := json.Unmarshal(raw, h); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	if err := h.Provision(cctx); err != nil {
		// As Caddy does: a handler that failed half-way cleans up
		// what it built.
		_ = h.Cleanup()
		cancel()
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return h, func() { _ = h.Cleanup(); cancel() }, nil
}

// eachStore provisions every app_password handler of a config, as Caddy
// would but without the sweep's schedule, and calls fn once for each Vault
// store among those that want accepts (handlers that share a store are
// visited once). Each handler is cleaned up as soon as fn returns; an
// error from fn ends the walk.
func eachStore(ctx context.Context, configFile, adapter string, want func(*Handler) bool, fn func(h *Handler, store string) error) error {
	handlers, err := loadHandlers(configFile, adapter)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, hj := range handlers {
		h, done, err := provisionForCommand(ctx, hj)
		if err != nil {
			return err
		}
		if !want(h) || seen[h.storeName()] {
			done()
			continue
		}
		store := h.storeName()
		seen[store] = true
		err = fn(h, store)
		done()
		if err != nil {
			return err
		}
	}
	return nil
}

// storeName names the Vault store a handler uses, for the commands'
// output: "<mount>/<path_prefix> at <address>" (and the namespace).
func (h *Handler) storeName() string {
	b := h.vault.Backend()
	name := path.Join(b.Mount, b.Prefix) + " at " + b.Client.Address()
	if ns := b.Client.Namespace(); ns != "" {
		name += " (namespace " + ns + ")"
	}
	return name
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
		var also []string
		if h.sweepUsesVaultLease() {
			also = append(also, leaseRecord)
		}
		for _, c := range h.vault.Checks(ctx, also...) {
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
