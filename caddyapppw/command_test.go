package caddyapppw

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

// runCheckOn writes a Caddyfile and runs `caddy app-password check` on it.
func runCheckOn(t *testing.T, caddyfileText string) (bool, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfileText), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ok, err := runCheck(t.Context(), &out, file, "caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	return ok, out.String()
}

func TestCheckCommand(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.vaultAuth = "token " + tokenWithPolicy(t, e, policyFor(t, e, "policy.hcl"), map[string]any{"ttl": "1h"})

	ok, out := runCheckOn(t, e.caddyfile(""))
	want := regexp.MustCompile(`^app_password handler 1 of 1
ok   vault reachable: http://127\.0\.0\.1:\d+ \(Vault 1\.21\.4, unsealed\)
ok   vault token: token, expires in (1h0m0s|59m5\ds), policies default,pol-testcheckcommand
ok   vault capabilities: every capability the module uses on secret/test/TestCheckCommand
ok   nextcloud reachable: http://127\.0\.0\.1:\d+ \(Nextcloud 31\.0\.4\)
$`)
	if !ok || !want.MatchString(out) {
		t.Fatalf("ok=%v\n%s", ok, out)
	}

	// One capability short.
	e.vaultAuth = "token " + tokenWithPolicy(t, e, strings.Replace(policyFor(t, e, "policy.hcl"), `["delete"]`, `[]`, 1), nil)
	ok, out = runCheckOn(t, e.caddyfile(""))
	if ok || !strings.Contains(out, "FAIL vault capabilities: missing delete on secret/metadata/test/TestCheckCommand/caddy-apppw-check\n") {
		t.Fatalf("ok=%v\n%s", ok, out)
	}

	// Nextcloud in maintenance, Vault unreachable.
	e.nc.SetFault(fakenextcloud.Fault{Maintenance: true})
	e.vaultAddr = "http://127.0.0.1:1"
	ok, out = runCheckOn(t, e.caddyfile(""))
	for _, line := range []string{
		"FAIL vault reachable: http://127.0.0.1:1: unreachable: ",
		"FAIL vault token: token: unreachable: ",
		"FAIL nextcloud reachable: " + e.nc.URL + ": Nextcloud is in maintenance mode\n",
	} {
		if ok || !strings.Contains(out, line) {
			t.Fatalf("want %q in\n%s", line, out)
		}
	}
	if strings.Contains(out, e.vault.Token) {
		t.Fatal("check output shows the token")
	}
}

// The command returns its exit code through caddycmd, as Caddy's own
// commands do, instead of exiting inside RunE: 1 with an error when a
// check fails or the config has no handler, and nothing is left running.
// Neither Vault nor Nextcloud is up here.
func TestCheckCommandExitCode(t *testing.T) {
	run := func(caddyfileText string) (int, error) {
		file := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(file, []byte(caddyfileText), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := checkCommand()
		if err := cmd.ParseFlags([]string{"--config", file, "--adapter", "caddyfile"}); err != nil {
			t.Fatal(err)
		}
		return cmdCheck(caddycmd.Flags{FlagSet: cmd.Flags()})
	}
	code, err := run("http://127.0.0.1:0 {\n\tapp_password {\n\t\tnextcloud http://127.0.0.1:1\n\t\tvault http://127.0.0.1:1 {\n\t\t\ttoken t\n\t\t\tmax_retries -1\n\t\t}\n\t}\n}\n")
	if code != 1 || err == nil || err.Error() != "app-password check: a check failed" {
		t.Fatalf("failing checks: code %d, error %v", code, err)
	}
	code, err = run("http://127.0.0.1:0 {\n\trespond ok\n}\n")
	if code != 1 || err == nil || !strings.HasPrefix(err.Error(), "no app_password handler in ") {
		t.Fatalf("no handler: code %d, error %v", code, err)
	}
}

// The check covers what the sweep and `list` need: LIST of the prefix,
// and, when the scheduled rounds keep their lease in Vault, the lease
// record beside the users'.
func TestCheckCommandSweepCapabilities(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	full := policyFor(t, e, "policy.hcl")
	check := func(policy, settings string) (bool, string) {
		t.Helper()
		e.vaultAuth = "token " + tokenWithPolicy(t, e, policy, nil)
		return runCheckOn(t, e.caddyfile(settings))
	}
	capabilities := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, " vault capabilities: ") {
				return l
			}
		}
		return out
	}
	dataStanza := `path "secret/data/` + e.prefix + `/*"`
	oneLevel := strings.Replace(full, dataStanza, `path "secret/data/`+e.prefix+`/+"`, 1)
	if oneLevel == full {
		t.Fatalf("no %s in the policy", dataStanza)
	}
	for _, c := range []struct {
		name, policy, settings, want string
	}{
		{"whole policy", full, "", "ok   vault capabilities: every capability the module uses on secret/" + e.prefix},
		{"without list", strings.Replace(full, `["list"]`, `[]`, 1), "",
			"FAIL vault capabilities: missing list on secret/metadata/" + e.prefix + "/"},
		{"users only, lease in Vault", oneLevel, "",
			"FAIL vault capabilities: missing create on secret/data/" + e.prefix + "/_sweep/lease, read on secret/data/" +
				e.prefix + "/_sweep/lease, update on secret/data/" + e.prefix + "/_sweep/lease"},
		{"users only, sweep off", oneLevel, "sweep off",
			"ok   vault capabilities: every capability the module uses on secret/" + e.prefix},
		{"users only, lease in Redis", oneLevel, "rate_limit {\n redis redis://127.0.0.1:1\n }",
			"ok   vault capabilities: every capability the module uses on secret/" + e.prefix},
	} {
		ok, out := check(c.policy, c.settings)
		if got := capabilities(out); got != c.want || ok != strings.HasPrefix(c.want, "ok") {
			t.Errorf("%s: ok=%v\n%s\nwant %s", c.name, ok, out, c.want)
		}
	}
}
