package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

// TestListAndSweepAsOperatorsRunThem runs `caddy app-password list` and
// `caddy app-password sweep` of the built binary on Caddyfile.example, as
// the README shows them: the exit codes, the output, Vault afterwards and
// the audit line on stderr.
func TestListAndSweepAsOperatorsRunThem(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy and needs the dev Vault: the full suite (scripts/test) runs it, -short does not")
	}
	bin := buildCaddy(t)
	vault := devvault.Start(t, devvault.Options{})
	nc := fakenextcloud.New(t)
	const (
		alicePW = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"
		bobPW   = "Zyxwv-Utsrq-Ponml-Kjihg-Fedcb"
		carolPW = "Qwert-Yuiop-Asdfg-Hjklz-Xcvbn"
	)
	nc.AddUser("alice", "alice@example.com", alicePW)
	nc.AddUser("bob", "") // bob revoked his app password; carol's account is gone
	const prefix = "nextcloud-mcp/app-passwords/"
	for uid, rec := range map[string]map[string]any{
		"alice": {"user_id": "alice", "app_password": alicePW, "username": "alice@example.com", "scopes": []string{"notes.read"}, "created_at": 1_767_225_600, "updated_at": 1_767_225_600},
		"bob":   {"user_id": "bob", "app_password": bobPW, "username": nil, "scopes": nil, "created_at": 1_767_225_600, "updated_at": 1_767_312_000},
		"carol": {"user_id": "carol", "app_password": carolPW, "username": nil, "scopes": nil, "created_at": 1_767_225_600, "updated_at": 1_767_225_600},
	} {
		if _, err := vault.Root.KVv2("secret").Put(t.Context(), prefix+uid, rec); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "NEXTCLOUD_URL="+nc.URL, "VAULT_ADDR="+vault.Addr, "VAULT_TOKEN="+vault.Token)
	run := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"app-password"}, args...)...)
		cmd.Args = append(cmd.Args, "--config", "../../Caddyfile.example", "--adapter", "caddyfile")
		cmd.Env = env
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{alicePW, bobPW, carolPW, vault.Token} {
			if strings.Contains(out.String()+errOut.String(), pw) {
				t.Fatalf("app-password %s shows a secret:\n%s\n%s", args[0], out.String(), errOut.String())
			}
		}
		return code, out.String(), errOut.String()
	}
	store := "secret/nextcloud-mcp/app-passwords at " + vault.Addr

	code, out, stderr := run("list")
	want := regexp.MustCompile(`^` + regexp.QuoteMeta(store) + `: 3 users
USER ID  LOGIN              SCOPES      CREATED               UPDATED               AGE +MCP SERVER
alice    alice@example\.com  notes\.read  2026-01-01T00:00:00Z  2026-01-01T00:00:00Z  \d+d\d+h +in sync
bob      bob                \(all\)       2026-01-01T00:00:00Z  2026-01-02T00:00:00Z  \d+d\d+h +in sync
carol    carol              \(all\)       2026-01-01T00:00:00Z  2026-01-01T00:00:00Z  \d+d\d+h +in sync
$`)
	if code != 0 || !want.MatchString(out) {
		t.Fatalf("list: exit %d\n%s\n%s", code, out, stderr)
	}

	code, out, stderr = run("sweep", "--dry-run")
	if wantOut := "sweep of " + store + ` (dry run: nothing is deleted)
would delete bob: nextcloud rejects its password
would delete carol: nextcloud rejects its password
listed 3, checked 3: 1 valid, 2 rejected; would delete 2, kept 0 on error
`; code != 0 || out != wantOut {
		t.Fatalf("sweep --dry-run: exit %d\n%s\nwant\n%s\n%s", code, out, wantOut, stderr)
	}

	code, out, stderr = run("sweep")
	if wantOut := "sweep of " + store + `
deleted bob: nextcloud rejects its password
deleted carol: nextcloud rejects its password
listed 3, checked 3: 1 valid, 2 rejected; deleted 2, kept 0 on error
`; code != 0 || out != wantOut {
		t.Fatalf("sweep: exit %d\n%s\nwant\n%s\n%s", code, out, wantOut, stderr)
	}
	for _, uid := range []string{"bob", "carol"} {
		if !strings.Contains(stderr, `"logger":"http.handlers.app_password.audit","msg":"sweep deleted a stale app password: nextcloud rejects it","user_id":"`+uid+`"`) {
			t.Fatalf("no audit line for %s on stderr:\n%s", uid, stderr)
		}
	}
	if _, err := vault.Root.KVv2("secret").Get(t.Context(), prefix+"alice"); err != nil {
		t.Fatalf("alice: %v", err)
	}
	for _, uid := range []string{"bob", "carol"} {
		if _, err := vault.Root.KVv2("secret").GetMetadata(t.Context(), prefix+uid); err == nil {
			t.Fatalf("%s still stored", uid)
		}
	}

	// Nextcloud down: nothing is deleted, and the command fails.
	nc.SetFault(fakenextcloud.Fault{Maintenance: true})
	code, out, stderr = run("sweep")
	if code != 1 || !strings.Contains(out, "kept alice: nextcloud check failed: nextcloud answered HTTP 503\n") ||
		!strings.Contains(stderr, "app-password sweep: "+store+": kept 1 record it could not check") {
		t.Fatalf("sweep with Nextcloud down: exit %d\n%s\n%s", code, out, stderr)
	}
}
