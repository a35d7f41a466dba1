package caddyapppw

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

// `sweep --dry-run` prints what a round would delete and deletes nothing;
// `sweep` deletes it, with an audit line each. Both fail while a record
// could not be checked, and succeed once every check answered.
func TestSweepCommand(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "") // its own sweeper waits on a clock nobody moves
	e.nc.BypassBruteForce("127.0.0.1")
	users := seedSweepUsers(e, 200, sweepRevoked, sweepBroken)
	useAutoSweepClock(t) // the commands' rounds do not wait for their rate
	file := writeCaddyfile(t, e.caddyfile(sweepFast))
	store := "secret/" + e.prefix + " at " + e.vault.Addr
	all := e.storedIDs()

	report := func(title, verb string, ids []string, counts string) string {
		var b strings.Builder
		b.WriteString("sweep of " + store + title + "\n")
		for _, id := range ids {
			b.WriteString(verb + " " + id + ": nextcloud rejects its password\n")
		}
		for _, id := range sweepBroken {
			b.WriteString("kept " + id + ": nextcloud check failed: nextcloud answered HTTP 500\n")
		}
		return b.String() + counts + "\n"
	}
	wantErr := "app-password sweep: " + store + ": kept 5 records it could not check"

	var out bytes.Buffer
	err := runSweep(t.Context(), &out, file, "caddyfile", true, false)
	want := report(" (dry run: nothing is deleted)", "would delete", sweepRevoked,
		"listed 200, checked 200: 175 valid, 20 rejected; would delete 20, kept 5 on error")
	if err == nil || err.Error() != wantErr || out.String() != want {
		t.Fatalf("dry run: %v\n%s\nwant\n%s", err, out.String(), want)
	}
	if got := e.storedIDs(); !slices.Equal(got, all) {
		t.Fatalf("the dry run changed Vault: %d keys", len(got))
	}
	if n := len(e.loggerLines(auditLogger, msgSweepGone)); n != 0 {
		t.Fatalf("%d deletions audited in a dry run", n)
	}
	if got := userIDs(e.loggerLines(sweepLogger, "sweep would delete a stale app password")); !slices.Equal(got, sweepRevoked) {
		t.Fatalf("dry-run lines for %v", got)
	}

	out.Reset()
	err = runSweep(t.Context(), &out, file, "caddyfile", false, false)
	want = report("", "deleted", sweepRevoked, "listed 200, checked 200: 175 valid, 20 rejected; deleted 20, kept 5 on error")
	if err == nil || err.Error() != wantErr || out.String() != want {
		t.Fatalf("sweep: %v\n%s\nwant\n%s", err, out.String(), want)
	}
	kept := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return slices.Contains(sweepRevoked, id) })
	if got := e.storedIDs(); !slices.Equal(got, kept) {
		t.Fatalf("Vault holds %d keys, want %d", len(got), len(kept))
	}
	if got := userIDs(e.loggerLines(auditLogger, msgSweepGone)); !slices.Equal(got, sweepRevoked) {
		t.Fatalf("audit lines for %v", got)
	}

	// Nextcloud answers for everyone again: nothing to delete, success,
	// through caddycmd's exit code as `caddy` would give it.
	for _, id := range sweepBroken {
		e.nc.SetLoginFault(users[idx(id)].login, fakenextcloud.Fault{})
	}
	cmd := sweepCommand()
	if err := cmd.ParseFlags([]string{"--config", file, "--adapter", "caddyfile", "--json"}); err != nil {
		t.Fatal(err)
	}
	if code, err := cmdSweep(caddycmd.Flags{FlagSet: cmd.Flags()}); code != 0 || err != nil {
		t.Fatalf("sweep with nothing to delete: exit %d, %v", code, err)
	}

	// --json: the report of each store.
	e.nc.SetLoginFault(users[idx("u150")].login, fakenextcloud.Fault{Status: 503})
	out.Reset()
	err = runSweep(t.Context(), &out, file, "caddyfile", true, true)
	var reports []sweptStore
	if jerr := json.Unmarshal(out.Bytes(), &reports); jerr != nil || err == nil || len(reports) != 1 {
		t.Fatalf("--json: %v %v\n%s", jerr, err, out.String())
	}
	r := reports[0]
	if r.Store != store || !r.Report.DryRun || r.Report.Listed != 180 || r.Report.Valid != 179 || len(r.Report.Kept) != 1 ||
		r.Report.Kept[0].UserID != "u150" || r.Report.Kept[0].Reason != "nextcloud check failed: nextcloud answered HTTP 503" {
		t.Fatalf("--json report %+v", r)
	}
	e.noSweepSecrets()
	if strings.Contains(out.String(), "Sweep-Pass-Word-") {
		t.Fatal("the report shows a password")
	}
}

// The exit code comes through caddycmd, as for check: 1 with the reason.
func TestSweepCommandExitCode(t *testing.T) {
	run := func(caddyfileText string, args ...string) (int, error) {
		cmd := sweepCommand()
		if err := cmd.ParseFlags(append([]string{"--config", writeCaddyfile(t, caddyfileText), "--adapter", "caddyfile"}, args...)); err != nil {
			t.Fatal(err)
		}
		return cmdSweep(caddycmd.Flags{FlagSet: cmd.Flags()})
	}
	// Vault down: the round cannot list the users.
	code, err := run("http://127.0.0.1:0 {\n\tapp_password {\n\t\tnextcloud http://127.0.0.1:1\n\t\tvault http://127.0.0.1:1 {\n\t\t\ttoken t\n\t\t\tmax_retries -1\n\t\t}\n\t}\n}\n", "--dry-run")
	if code != 1 || err == nil || !strings.HasPrefix(err.Error(), "app-password sweep: secret/nextcloud-mcp/app-passwords at http://127.0.0.1:1: listing users: unreachable: ") {
		t.Fatalf("Vault down: exit %d, %v", code, err)
	}
	code, err = run("http://127.0.0.1:0 {\n\trespond ok\n}\n")
	if code != 1 || err == nil || !strings.HasPrefix(err.Error(), "no app_password handler in ") {
		t.Fatalf("no handler: exit %d, %v", code, err)
	}
}
