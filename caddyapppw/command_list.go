package caddyapppw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// listCommand is `caddy app-password list`.
func listCommand() *cobra.Command {
	list := &cobra.Command{
		Use:   "list --config <path> [--adapter <name>] [--json]",
		Short: "Lists the users whose app password is stored in Vault",
		Long: `
Loads a config (Caddyfile or JSON) and, for each Vault store its
app_password handlers use, lists the stored users: user id, the login name
the password is checked under, scopes, when the record was created and last
updated, and its age (the time since that update: the stored password is at
least that old). It never prints a password. With --json it prints one JSON
array of users instead. Exits 1 if Vault cannot be listed or a record cannot
be read.

The token needs "list" on the path prefix (vault/policy.hcl grants it).`,
	}
	list.Flags().StringP("config", "c", "", "Configuration file (default: ./Caddyfile)")
	list.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
	list.Flags().Bool("json", false, "Print a JSON array instead of a table")
	list.RunE = caddycmd.WrapCommandFuncForCobra(cmdList)
	return list
}

func cmdList(fl caddycmd.Flags) (int, error) {
	ok, err := runList(context.Background(), os.Stdout, fl.String("config"), fl.String("adapter"), fl.Bool("json"))
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, errors.New("app-password list: a store or a record could not be read")
	}
	return 0, nil
}

// listedUser is one stored user as `list` shows it. The times are Unix
// seconds, as stored.
type listedUser struct {
	Store      string   `json:"store"`
	UserID     string   `json:"user_id"`
	Login      string   `json:"login,omitempty"`
	Username   *string  `json:"username"`
	Scopes     []string `json:"scopes"`
	CreatedAt  int64    `json:"created_at"`
	UpdatedAt  int64    `json:"updated_at"`
	AgeSeconds int64    `json:"age_seconds"`
	// MCPPending is the change the MCP server has not taken yet (post,
	// patch, delete; absent when its copy follows Vault), pending since
	// MCPPendingSince (Unix seconds).
	MCPPending      string `json:"mcp_pending,omitempty"`
	MCPPendingSince int64  `json:"mcp_pending_since,omitempty"`
	Error           string `json:"error,omitempty"`
	// delivery: the config delivers to the MCP server, so the record's
	// state there is worth showing.
	delivery bool
}

// runList lists the users of each store the config's handlers use (each
// store once). It reports whether every store and record could be read.
func runList(ctx context.Context, out io.Writer, configFile, adapter string, asJSON bool) (bool, error) {
	allOK := true
	users := []listedUser{} // [] in JSON when nothing is stored
	hasVault := func(h *Handler) bool { return h.vault != nil }
	err := eachStore(ctx, configFile, adapter, hasVault, func(h *Handler, store string) error {
		found, ok, err := h.listUsers(ctx)
		if err != nil {
			if asJSON {
				return fmt.Errorf("listing %s: %w", store, err)
			}
			fmt.Fprintf(out, "%s: FAIL %v\n", store, err)
			allOK = false
			return nil
		}
		allOK = allOK && ok
		if asJSON {
			users = append(users, found...)
		} else {
			printUsers(out, store, found)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(users); err != nil {
			return false, err
		}
	}
	return allOK, nil
}

// listUsers reads every stored user's record, in user id order. A record
// gone since the listing is left out; one that cannot be read is listed
// with the error, and ok is false.
func (h *Handler) listUsers(ctx context.Context) (users []listedUser, ok bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, time.Duration(h.Vault.Timeout))
	ids, err := h.vault.List(lctx)
	cancel()
	if err != nil {
		return nil, false, err
	}
	slices.Sort(ids)
	store := h.storeName()
	now := clock()
	ok = true
	for _, id := range ids {
		lctx, cancel := context.WithTimeout(ctx, time.Duration(h.Vault.Timeout))
		rec, err := h.vault.Load(lctx, id)
		cancel()
		switch {
		case errors.Is(err, vaultkv.ErrNotFound):
			continue
		case err != nil:
			users = append(users, listedUser{Store: store, UserID: id, Error: err.Error()})
			ok = false
			continue
		}
		login := id
		if rec.Username != nil && *rec.Username != "" {
			login = *rec.Username
		}
		users = append(users, listedUser{
			Store: store, UserID: id, Login: login, Username: rec.Username, Scopes: rec.Scopes,
			CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt,
			AgeSeconds: max(0, int64(now.Sub(time.Unix(rec.UpdatedAt, 0))/time.Second)),
			MCPPending: string(rec.MCPPending), MCPPendingSince: rec.MCPPendingSince,
			delivery: h.DeliverToMCP,
		})
	}
	return users, ok, nil
}

// printUsers writes one store's users as a table.
func printUsers(out io.Writer, store string, users []listedUser) {
	noun := "users"
	if len(users) == 1 {
		noun = "user"
	}
	pending := 0
	for _, u := range users {
		if u.MCPPending != "" {
			pending++
		}
	}
	fmt.Fprintf(out, "%s: %d %s", store, len(users), noun)
	if pending > 0 {
		fmt.Fprintf(out, ", %d owing the MCP server a change", pending)
	}
	fmt.Fprintln(out)
	if len(users) == 0 {
		return
	}
	now := clock()
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER ID\tLOGIN\tSCOPES\tCREATED\tUPDATED\tAGE\tMCP SERVER")
	for _, u := range users {
		if u.Error != "" {
			fmt.Fprintf(tw, "%s\tunreadable: %s\n", u.UserID, u.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.UserID, u.Login, scopesText(u.Scopes),
			unixText(u.CreatedAt), unixText(u.UpdatedAt), ageText(time.Duration(u.AgeSeconds)*time.Second),
			mcpText(u, now))
	}
	_ = tw.Flush()
}

// mcpText shows whether the MCP server's copy follows the record: "in
// sync", or the change it still owes and for how long, e.g. "owes
// delete (5m)"; "-" without deliver_to_mcp.
func mcpText(u listedUser, now time.Time) string {
	switch {
	case u.MCPPending == "" && !u.delivery:
		return "-" // no deliver_to_mcp: the MCP server reads Vault
	case u.MCPPending == "":
		return "in sync"
	}
	return fmt.Sprintf("owes %s (%s)", u.MCPPending, ageText(max(0, now.Sub(time.Unix(u.MCPPendingSince, 0)))))
}

// scopesText shows stored scopes; null means no restriction.
func scopesText(scopes []string) string {
	switch {
	case scopes == nil:
		return "(all)"
	case len(scopes) == 0:
		return "(none)"
	}
	return strings.Join(scopes, ",")
}

func unixText(sec int64) string {
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}

// ageText shows an age in its two largest units: 45s, 12m, 3h5m, 40d2h.
func ageText(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
