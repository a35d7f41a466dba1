package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The reasons the scenario's rows fail with, as printed.
const (
	whyUserID  = "user id is not a Nextcloud user id (1 to 64 of A-Z a-z 0-9 space _ . @ - ')"
	whyDecrypt = "encrypted_password does not decrypt with the key (another key, or a corrupt token)"
	whyScopes  = "scopes is not a JSON list of strings"
)

// cli runs the command against target with env as its environment.
func cli(t *testing.T, target Target, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return cliWith(t, func(_ context.Context, configPath, adapter string) (Target, error) {
		if configPath != "Caddyfile" || adapter != "" {
			t.Errorf("openTarget(%q, %q), want the --config value and no adapter", configPath, adapter)
		}
		return target, nil
	}, env, args...)
}

// cliWith runs the command with open as its openTarget.
func cliWith(t *testing.T, open func(ctx context.Context, configPath, adapter string) (Target, error), env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := command{
		getenv:     func(k string) string { return env[k] },
		openTarget: open,
		stdout:     &out,
		stderr:     &errOut,
	}
	code = c.run(t.Context(), args)
	return code, out.String(), errOut.String()
}

// noSecrets fails the test if out holds any of secrets.
func noSecrets(t *testing.T, out string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("output contains a secret (%d characters)", len(s))
		}
	}
}

// store is what a scenario imports into: the memory target, or the
// plugin's Vault store named by a Caddyfile.
type store struct {
	// config is the --config value, open the command's openTarget.
	config string
	open   func(ctx context.Context, configPath, adapter string) (Target, error)
	// seed stores rec as the module would have, outside the import.
	seed func(t *testing.T, rec Record)
	// snapshot reads every stored record back.
	snapshot func(t *testing.T) map[string]Record
	// writes counts the import's successful writes so far.
	writes func() int
	// versions, if set, is the storage's own account of writes (KV v2
	// versions): equal before and after means nothing was written.
	versions func(t *testing.T) map[string]int
}

// memStore is a store in memory.
func memStore(target *memTarget) store {
	return store{
		config: "Caddyfile",
		open: func(context.Context, string, string) (Target, error) {
			return target, nil
		},
		seed:     func(_ *testing.T, rec Record) { target.seed(rec) },
		snapshot: func(*testing.T) map[string]Record { return target.snapshot() },
		writes:   target.writes,
	}
}

// scenario imports the fixture's rows from dbURL into an in-memory target
// in which frank has a newer record and judy an older one: a dry run, the
// import, and a second import. extraSecrets (a database password) must
// not show either.
func scenario(t *testing.T, f fixture, dbURL string, extraSecrets ...string) {
	scenarioInto(t, memStore(newMemTarget()), f, dbURL, extraSecrets...)
}

// scenarioInto is scenario with the store given.
func scenarioInto(t *testing.T, st store, f fixture, dbURL string, extraSecrets ...string) {
	env := map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}
	frank, judy := f.row("frank").record(t), f.row("judy").record(t)
	frank.AppPassword, frank.UpdatedAt = "newer-password-of-frank-0000", frank.UpdatedAt+100
	judy.AppPassword, judy.UpdatedAt = "older-password-of-judy-00000", 1600000000
	st.seed(t, frank)
	st.seed(t, judy)
	before := st.snapshot(t)
	var versions map[string]int
	if st.versions != nil {
		versions = st.versions(t)
	}
	unwritten := func(name string, want map[string]Record) {
		t.Helper()
		if got := st.snapshot(t); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s changed the records: %+v", name, got)
		}
		if st.versions == nil {
			return
		}
		if got := st.versions(t); !reflect.DeepEqual(got, versions) {
			t.Fatalf("%s wrote: versions %v, before %v", name, got, versions)
		}
	}
	secrets := append(f.secrets(), extraSecrets...)
	config := []string{"--config", st.config}

	check := func(name string, args []string, wantCode int, want string) {
		t.Helper()
		code, out, errOut := cliWith(t, st.open, env, args...)
		if code != wantCode || out != want {
			t.Errorf("%s: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout:\n%s", name, code, out, errOut, wantCode, want)
		}
		noSecrets(t, out+errOut, secrets...)
	}

	check("dry run", append([]string{"--from", dbURL, "--dry-run"}, config...), exitFailed, `failed "../heidi": `+whyUserID+`
would import alice
would import bob
would import carol
failed dave: `+whyDecrypt+`
failed erin: `+whyDecrypt+`
skipped frank: Vault has a newer record (updated_at 1700000800 > 1700000700)
failed grace: `+whyScopes+`
would import judy
dry run, nothing written: 4 would import, 1 skipped, 4 failed
`)
	if n := st.writes(); n != 0 {
		t.Fatalf("dry run wrote %d records", n)
	}
	unwritten("dry run", before)

	check("import", append([]string{"--from", dbURL}, config...), exitFailed, `failed "../heidi": `+whyUserID+`
imported alice
imported bob
imported carol
failed dave: `+whyDecrypt+`
failed erin: `+whyDecrypt+`
skipped frank: Vault has a newer record (updated_at 1700000800 > 1700000700)
failed grace: `+whyScopes+`
imported judy
4 imported, 1 skipped, 4 failed
`)
	want := map[string]Record{"frank": frank}
	for _, id := range []string{"alice", "bob", "carol", "judy"} {
		want[id] = f.row(id).record(t)
	}
	got := st.snapshot(t)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("records after the import:\n%#v\nwant:\n%#v", got, want)
	}
	// The distinctions a loose comparison would miss.
	if got["alice"].Scopes != nil || got["alice"].Username != nil {
		t.Error("alice: NULL scopes and username must stay nil")
	}
	if s := got["carol"].Scopes; s == nil || len(s) != 0 {
		t.Errorf("carol: scopes [] must stay an empty list, got %#v", s)
	}
	if got["bob"].UpdatedAt != 4102444800 {
		t.Errorf("bob: updated_at %d, want the BIGINT 4102444800", got["bob"].UpdatedAt)
	}
	writes := st.writes()
	if st.versions != nil {
		versions = st.versions(t)
	}

	check("second import", append([]string{"--from", dbURL}, config...), exitFailed, `failed "../heidi": `+whyUserID+`
skipped alice: already up to date (updated_at 1700000000)
skipped bob: already up to date (updated_at 4102444800)
skipped carol: already up to date (updated_at 1700000300)
failed dave: `+whyDecrypt+`
failed erin: `+whyDecrypt+`
skipped frank: Vault has a newer record (updated_at 1700000800 > 1700000700)
failed grace: `+whyScopes+`
skipped judy: already up to date (updated_at 1700001100)
0 imported, 5 skipped, 4 failed
`)
	if n := st.writes(); n != writes {
		t.Errorf("second import wrote %d records", n-writes)
	}
	unwritten("second import", want)
}

func TestImportSQLite(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	scenario(t, f, "sqlite:///"+db) // sqlite:////abs/path.db
}

func TestImportSQLiteRelativeURL(t *testing.T) {
	dir := t.TempDir()
	f := generate(t, "--sqlite", filepath.Join(dir, "tokens.db"))
	t.Chdir(dir)
	target := newMemTarget()
	code, out, errOut := cli(t, target, map[string]string{"MCP_KEY": f.Key},
		"--from", "sqlite+aiosqlite:///tokens.db", "--config", "Caddyfile", "--key-env", "MCP_KEY")
	if code != exitFailed || !strings.HasSuffix(out, "\n5 imported, 0 skipped, 4 failed\n") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if got := len(target.snapshot()); got != 5 {
		t.Errorf("%d records, want 5", got)
	}
}

// A user who provisions through the module while the import runs: the
// import's check-and-set write fails, it looks again, and keeps the newer
// record.
func TestProvisioningDuringImportWins(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	target := newMemTarget()
	fresh := Record{UserID: "alice", AppPassword: "provisioned-during-the-import", CreatedAt: 1800000000, UpdatedAt: 1800000000}
	target.beforePut = func(userID string) {
		if userID == "alice" && target.snapshot()["alice"].UserID == "" {
			target.seed(fresh)
		}
	}
	code, out, errOut := cli(t, target, map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, "--from", "sqlite:///"+db, "--config", "Caddyfile")
	if code != exitFailed {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "\nskipped alice: Vault has a newer record (updated_at 1800000000 > 1700000000)\n") {
		t.Errorf("output:\n%s", out)
	}
	if got := target.snapshot()["alice"]; !reflect.DeepEqual(got, fresh) {
		t.Errorf("alice's record: %+v, want the one provisioned meanwhile", got)
	}
}

// Every row under a key other than the one given fails, the run exits 1,
// and nothing is written.
func TestWrongKeyFailsEveryRowNotTheRun(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	target := newMemTarget()
	code, out, errOut := cli(t, target, map[string]string{"TOKEN_ENCRYPTION_KEY": f.WrongKey}, "--from", "sqlite:///"+db, "--config", "Caddyfile")
	if code != exitFailed || !strings.HasSuffix(out, "\n1 imported, 0 skipped, 8 failed\n") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	// dave's row is the one under the other key.
	if !strings.Contains(out, "\nimported dave\n") || target.writes() != 1 {
		t.Errorf("output:\n%s", out)
	}
	noSecrets(t, out+errOut, f.secrets()...)
}

// The key comes from the environment only; a missing or malformed one
// stops the run before anything is read, without showing the value.
func TestKeyFromEnvironmentOnly(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	from := []string{"--from", "sqlite:///" + db, "--config", "Caddyfile"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"unset", nil, from, "import-mcp-db: TOKEN_ENCRYPTION_KEY is not set: export the MCP server's TOKEN_ENCRYPTION_KEY under that name\n"},
		{"other variable unset", map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, append([]string{"--key-env", "MCP_KEY"}, from...),
			"import-mcp-db: MCP_KEY is not set: export the MCP server's TOKEN_ENCRYPTION_KEY under that name\n"},
		{"malformed", map[string]string{"TOKEN_ENCRYPTION_KEY": "not-a-fernet-key-s3cr3t"}, from,
			"import-mcp-db: TOKEN_ENCRYPTION_KEY is not a Fernet key (base64url of 32 bytes, as Fernet.generate_key() makes it)\n"},
		{"as a flag", nil, append([]string{"--key", f.Key}, from...), "flag provided but not defined: -key\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := newMemTarget()
			code, out, errOut := cli(t, target, tc.env, tc.args...)
			if code != exitUsage || out != "" || !strings.HasPrefix(errOut, tc.wantErr) {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and stderr starting %q", code, out, errOut, tc.wantErr)
			}
			noSecrets(t, errOut, "not-a-fernet-key-s3cr3t")
			if target.writes() != 0 {
				t.Error("wrote records")
			}
		})
	}
}

// failingTarget refuses to read one user, as a Vault policy might.
type failingTarget struct {
	*memTarget
	user string
}

func (f failingTarget) Current(ctx context.Context, userID string) (Current, error) {
	if userID == f.user {
		return Current{}, errors.New("permission denied")
	}
	return f.memTarget.Current(ctx, userID)
}

// A Vault error fails that user; the others are imported.
func TestVaultErrorFailsThatUser(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	target := failingTarget{newMemTarget(), "bob"}
	code, out, errOut := cli(t, target, map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, "--from", "sqlite:///"+db, "--config", "Caddyfile")
	if code != exitFailed || !strings.Contains(out, "\nfailed bob: reading Vault: permission denied\n") ||
		!strings.HasSuffix(out, "\n4 imported, 0 skipped, 5 failed\n") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
}
