package caddyapppw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
)

// sweepCommand is `caddy app-password sweep`.
func sweepCommand() *cobra.Command {
	sw := &cobra.Command{
		Use:   "sweep --config <path> [--adapter <name>] [--dry-run] [--json]",
		Short: "Runs one sweep round now: deletes stored app passwords Nextcloud rejects",
		Long: `
Loads a config (Caddyfile or JSON) and, for each Vault store its
app_password handlers use, runs one sweep round now, with the handler's
sweep settings (rate, concurrency, slow threshold): checks each stored
password against Nextcloud and deletes the records Nextcloud definitively
rejects (OCS status 997), as the periodic sweep does. It prints what it
deleted, what it kept because the check failed, and why a round ended early.

With --dry-run it deletes nothing and prints what it would delete.

The command does not wait for the replicas' sweep lease: an operator's
round runs even when a replica swept within the interval. Deletions are
written to the log (stderr) as the audit lines of the periodic sweep.

Exits 0 when every round checked every user and kept nothing on error;
1 otherwise (a round stopped early, a check or a record failed, Vault could
not be listed). Ctrl-C ends the rounds; checks in flight finish.`,
	}
	sw.Flags().StringP("config", "c", "", "Configuration file (default: ./Caddyfile)")
	sw.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
	sw.Flags().Bool("dry-run", false, "Delete nothing; print what would be deleted")
	sw.Flags().Bool("json", false, "Print the rounds' reports as JSON")
	sw.RunE = caddycmd.WrapCommandFuncForCobra(cmdSweep)
	return sw
}

func cmdSweep(fl caddycmd.Flags) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runSweep(ctx, os.Stdout, fl.String("config"), fl.String("adapter"), fl.Bool("dry-run"), fl.Bool("json")); err != nil {
		return 1, err
	}
	return 0, nil
}

// sweptStore is one store's round, for --json.
type sweptStore struct {
	Store  string       `json:"store"`
	Report sweep.Report `json:"report"`
	Error  string       `json:"error,omitempty"`
}

// runSweep runs one round on each store the config's handlers use (each
// store once). The error says what kept the command from succeeding: a
// round that failed, stopped early, or kept records on error.
func runSweep(ctx context.Context, out io.Writer, configFile, adapter string, dryRun, asJSON bool) error {
	var problems []string
	results := []sweptStore{}
	hasSweeper := func(h *Handler) bool { return h.sweeper != nil }
	err := eachStore(ctx, configFile, adapter, hasSweeper, func(h *Handler, store string) error {
		rep, err := h.sweeper.Round(ctx, dryRun)
		res := sweptStore{Store: store, Report: rep}
		switch {
		case err != nil:
			res.Error = err.Error()
			problems = append(problems, store+": "+err.Error())
		case !rep.Complete():
			problems = append(problems, fmt.Sprintf("%s: the round stopped early (%s)", store, rep.Stopped))
		case len(rep.Kept) == 1:
			problems = append(problems, store+": kept 1 record it could not check")
		case len(rep.Kept) > 1:
			problems = append(problems, fmt.Sprintf("%s: kept %d records it could not check", store, len(rep.Kept)))
		}
		if asJSON {
			results = append(results, res)
		} else {
			printReport(out, store, rep)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	}
	if len(problems) > 0 {
		return errors.New("app-password sweep: " + strings.Join(problems, "; "))
	}
	return nil
}

// printReport writes one round: each deletion (or would-be deletion),
// each record kept, why the round ended early (a failure of the store
// among them), and the counts.
func printReport(out io.Writer, store string, rep sweep.Report) {
	title := "sweep of " + store
	if rep.DryRun {
		title += " (dry run: nothing is deleted)"
	}
	fmt.Fprintln(out, title)
	for _, id := range rep.WouldDelete {
		fmt.Fprintf(out, "would delete %s: nextcloud rejects its password\n", id)
	}
	for _, id := range rep.Deleted {
		fmt.Fprintf(out, "deleted %s: nextcloud rejects its password\n", id)
	}
	for _, id := range rep.Changed {
		fmt.Fprintf(out, "kept %s: its password was replaced during the round\n", id)
	}
	for _, k := range rep.Kept {
		fmt.Fprintf(out, "kept %s: %s\n", k.UserID, k.Reason)
	}
	if !rep.Complete() {
		fmt.Fprintf(out, "stopped early (%s): %s; %d not checked\n", rep.Stopped, rep.StopDetail, rep.Unchecked)
	}
	verb, n := "deleted", len(rep.Deleted)
	if rep.DryRun {
		verb, n = "would delete", len(rep.WouldDelete)
	}
	fmt.Fprintf(out, "listed %d, checked %d: %d valid, %d rejected; %s %d, kept %d on error\n",
		rep.Listed, rep.Checked, rep.Valid, rep.Rejected, verb, n, len(rep.Kept))
}
