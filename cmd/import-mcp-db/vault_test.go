package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// The tests that use Vault share one dev Vault (Vault's real core, the
// project's tools/devvault) per package run; each test has its own path
// prefix, and its own mount where it needs one.

var (
	sharedVault     *devvault.Server
	sharedVaultOnce sync.Once
	sharedVaultErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedVault != nil {
		sharedVault.Stop()
	}
	os.Exit(code)
}

func devVault(t *testing.T) *devvault.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the dev Vault: the full suite (scripts/test) runs it, -short does not")
	}
	sharedVaultOnce.Do(func() { sharedVault, sharedVaultErr = devvault.Run(devvault.Options{}) })
	if sharedVaultErr != nil {
		t.Fatal(sharedVaultErr)
	}
	return sharedVault
}

// vaultEnv is one test's corner of the dev Vault, the Caddyfile whose
// app_password handler names it, and the fake Nextcloud that handler asks.
type vaultEnv struct {
	t         *testing.T
	vault     *devvault.Server
	nc        *fakenextcloud.Server
	mount     string
	kv        int
	prefix    string
	site      string // http://127.0.0.1:<port> of the Caddyfile's site
	caddyfile string // its path
	// root is the plugin's store with the root token: it writes what the
	// module itself would have written.
	root *vaultkv.Store
	// puts counts the import's successful writes.
	puts atomic.Int64
	// beforePut, if set, runs before each of the import's writes.
	beforePut func(userID string)
}

// newVaultEnv writes a Caddyfile whose vault block uses a KV engine of
// version kv and logs in with the lines auth returns (once the mount and
// prefix are known).
func newVaultEnv(t *testing.T, kv int, auth func(*vaultEnv) string) *vaultEnv {
	t.Helper()
	v := devVault(t)
	// Only the Caddyfile says where and how: nothing from the test's
	// environment.
	for _, k := range []string{api.EnvVaultAddress, api.EnvVaultToken, api.EnvVaultNamespace} {
		t.Setenv(k, "")
	}
	e := &vaultEnv{
		t: t, vault: v, nc: fakenextcloud.New(t), mount: "secret", kv: kv,
		prefix:    "import/" + testName(t),
		caddyfile: filepath.Join(t.TempDir(), "Caddyfile"),
	}
	if kv == 1 {
		e.mount = "kv1-" + testName(t)
		err := v.Root.Sys().MountWithContext(t.Context(), e.mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	e.site = fmt.Sprintf("http://127.0.0.1:%d", port)
	text := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	log {
		output discard
	}
}

%s {
	app_password {
		nextcloud %s
		vault %s {
			%s
			mount %s
			path_prefix %s
			kv_version %d
		}
		# A sweep round would check the imported users against the
		# fake Nextcloud, which knows none of them.
		sweep off
	}
	reverse_proxy 127.0.0.1:%d
}
`, e.site, e.nc.URL, v.Addr, auth(e), e.mount, e.prefix, kv, freePort(t))
	if err := os.WriteFile(e.caddyfile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	rc := &vaultkv.Config{Address: v.Addr, Token: v.Token, Mount: e.mount, PathPrefix: e.prefix, KVVersion: kv}
	rc.SetDefaults()
	root, err := vaultkv.New(rc, vaultkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	e.root = root
	return e
}

// testName turns the test's name into a Vault path segment.
func testName(t *testing.T) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, t.Name())
}

// tokenAuth is the vault block's auth line for the root token, through
// an {env.*} placeholder as a deployment would write it.
func tokenAuth(e *vaultEnv) string {
	e.t.Setenv("IMPORT_TEST_VAULT_TOKEN", e.vault.Token)
	return "token {env.IMPORT_TEST_VAULT_TOKEN}"
}

// store is the scenario's view of this Vault: the import runs with the
// real openTarget on the Caddyfile; records are seeded and read back
// around it.
func (e *vaultEnv) store() store {
	st := store{
		config: e.caddyfile,
		open: func(ctx context.Context, configPath, adapter string) (Target, error) {
			if configPath != e.caddyfile || adapter != "" {
				e.t.Errorf("openTarget(%q, %q), want the Caddyfile", configPath, adapter)
			}
			target, err := openTarget(ctx, configPath, adapter)
			if err != nil {
				return nil, err
			}
			return countingTarget{Target: target, e: e}, nil
		},
		seed:     func(t *testing.T, rec Record) { e.seed(rec) },
		snapshot: func(t *testing.T) map[string]Record { return e.snapshot() },
		writes:   func() int { return int(e.puts.Load()) },
	}
	if e.kv == 2 {
		st.versions = func(t *testing.T) map[string]int { return e.versions() }
	}
	return st
}

// countingTarget counts the successful writes of the target it wraps.
type countingTarget struct {
	Target
	e *vaultEnv
}

func (c countingTarget) Put(ctx context.Context, rec Record, prev Current) error {
	if c.e.beforePut != nil {
		c.e.beforePut(rec.UserID)
	}
	err := c.Target.Put(ctx, rec, prev)
	if err == nil {
		c.e.puts.Add(1)
	}
	return err
}

func (c countingTarget) Close() error { return c.Target.(io.Closer).Close() }

// seed writes rec as the module does, through the plugin's store.
func (e *vaultEnv) seed(rec Record) {
	e.t.Helper()
	version := 0
	cur, err := e.root.Load(e.t.Context(), rec.UserID)
	switch {
	case err == nil:
		version = cur.Version
	case !errors.Is(err, vaultkv.ErrNotFound):
		e.t.Fatal(err)
	}
	err = e.root.Save(e.t.Context(), &vaultkv.Record{
		UserID: rec.UserID, AppPassword: rec.AppPassword, Username: rec.Username, Scopes: rec.Scopes,
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt, Version: version,
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// ids lists the secrets below the prefix, as root, straight from Vault.
func (e *vaultEnv) ids() []string {
	e.t.Helper()
	p := e.mount + "/metadata/" + e.prefix
	if e.kv == 1 {
		p = e.mount + "/" + e.prefix
	}
	sec, err := e.vault.Root.Logical().ListWithContext(e.t.Context(), p)
	if err != nil {
		e.t.Fatal(err)
	}
	if sec == nil {
		return nil
	}
	var ids []string
	for _, k := range sec.Data["keys"].([]any) {
		ids = append(ids, k.(string))
	}
	slices.Sort(ids)
	return ids
}

// recordFields are the fields of a secret in the module's layout, no more.
var recordFields = []string{"app_password", "created_at", "scopes", "updated_at", "user_id", "username"}

// snapshot reads every secret below the prefix as root, straight from
// Vault (not through the plugin's store), checking its fields and their
// JSON types: null stays null, [] stays a list, the times are numbers.
func (e *vaultEnv) snapshot() map[string]Record {
	e.t.Helper()
	out := map[string]Record{}
	for _, id := range e.ids() {
		var (
			sec *api.KVSecret
			err error
		)
		if e.kv == 1 {
			sec, err = e.vault.Root.KVv1(e.mount).Get(e.t.Context(), e.prefix+"/"+id)
		} else {
			sec, err = e.vault.Root.KVv2(e.mount).Get(e.t.Context(), e.prefix+"/"+id)
		}
		if err != nil {
			e.t.Fatal(err)
		}
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range sec.Data {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(keys, recordFields) {
			e.t.Errorf("%s: fields %v, want %v", id, keys, recordFields)
		}
		raw, _ := json.Marshal(sec.Data)
		var r struct {
			UserID      string   `json:"user_id"`
			AppPassword string   `json:"app_password"`
			Username    *string  `json:"username"`
			Scopes      []string `json:"scopes"`
			CreatedAt   int64    `json:"created_at"`
			UpdatedAt   int64    `json:"updated_at"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			e.t.Fatalf("%s: %v", id, err)
		}
		out[id] = Record(r)
	}
	return out
}

// versions is each secret's current KV v2 version: any write bumps it.
func (e *vaultEnv) versions() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, id := range e.ids() {
		md, err := e.vault.Root.KVv2(e.mount).GetMetadata(e.t.Context(), e.prefix+"/"+id)
		if err != nil {
			e.t.Fatal(err)
		}
		out[id] = md.CurrentVersion
	}
	return out
}

// throughCaddy runs the Caddyfile the import read in a real Caddy and
// checks that each imported user's password is answered from Vault:
// has_app_password true, and Nextcloud never asked. A user the import
// failed (dave) shows that the count would have seen a call.
func (e *vaultEnv) throughCaddy(f fixture, imported ...string) {
	t := e.t
	t.Helper()
	cfg, _, _, err := caddycmd.LoadConfig(e.caddyfile, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading the Caddyfile into Caddy: %v", err)
	}
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(func() {
		_ = caddy.Stop()
		client.CloseIdleConnections()
	})
	get := func(uid, password string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, e.site+"/api/v1/users/"+uid+"/app-password", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(uid+":"+password)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}

	calls := e.nc.Calls()
	for _, uid := range imported {
		status, body := get(uid, f.row(uid).Password)
		if want := `{"success":true,"user_id":"` + uid + `","has_app_password":true}`; status != http.StatusOK || body != want {
			t.Errorf("GET %s with the imported password: %d %s, want 200 %s", uid, status, body, want)
		}
	}
	if n := e.nc.Calls() - calls; n != 0 {
		t.Errorf("the imported users' GETs asked Nextcloud %d times, want 0", n)
	}
	// dave's row did not decrypt, so Vault has nothing for him: the
	// module asks Nextcloud, which does not know him.
	if status, body := get("dave", f.row("dave").Password); status != http.StatusUnauthorized || !strings.Contains(body, "Invalid app password") {
		t.Errorf("GET dave: %d %s, want 401 Invalid app password", status, body)
	}
	if n := e.nc.Calls() - calls; n != 1 {
		t.Errorf("GET dave asked Nextcloud %d times, want 1", n)
	}
}

// The SQLite scenario into the plugin's Vault store named by a Caddyfile
// (KV v2 and KV v1, token through {env.*}), then that Caddyfile in Caddy.
func TestImportSQLiteIntoVault(t *testing.T) {
	for _, kv := range []int{2, 1} {
		t.Run(fmt.Sprintf("kv%d", kv), func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "tokens.db")
			f := generate(t, "--sqlite", db)
			e := newVaultEnv(t, kv, tokenAuth)
			scenarioInto(t, e.store(), f, "sqlite:///"+db)
			e.throughCaddy(f, "alice", "bob", "carol", "judy")
			e.listed()
		})
	}
}

// appRole enables AppRole at a mount of the test's own, with a role that
// carries the module's policy (vault/policy.hcl) rewritten for the test's
// mount and prefix, capabilities untouched. It returns the vault block's
// auth lines, the secret id passed through an environment variable.
func appRole(e *vaultEnv) string {
	t := e.t
	t.Helper()
	root := e.vault.Root
	mount := "approle-" + testName(t)
	if err := root.Sys().EnableAuthWithOptionsWithContext(t.Context(), mount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join("..", "..", "vault", "policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	policy := strings.ReplaceAll(string(text), "nextcloud-mcp/app-passwords", e.prefix)
	policy = strings.ReplaceAll(policy, `"secret/`, `"`+e.mount+`/`)
	if err := root.Sys().PutPolicyWithContext(t.Context(), mount, policy); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(t.Context(), "auth/"+mount+"/role/import", map[string]any{"token_policies": []string{mount}}); err != nil {
		t.Fatal(err)
	}
	sec, err := root.Logical().ReadWithContext(t.Context(), "auth/"+mount+"/role/import/role-id")
	if err != nil {
		t.Fatal(err)
	}
	roleID := sec.Data["role_id"].(string)
	sec, err = root.Logical().WriteWithContext(t.Context(), "auth/"+mount+"/role/import/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("IMPORT_TEST_SECRET_ID", sec.Data["secret_id"].(string))
	return fmt.Sprintf("approle {\n\t\t\t\trole_id %s\n\t\t\t\tsecret_id_env IMPORT_TEST_SECRET_ID\n\t\t\t\tmount %s\n\t\t\t}", roleID, mount)
}

// The same through an AppRole login with only the module's policy: the
// import needs no more than Caddy does.
func TestImportIntoVaultWithAppRole(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	e := newVaultEnv(t, 2, appRole)
	scenarioInto(t, e.store(), f, "sqlite:///"+db)
	e.throughCaddy(f, "alice", "bob", "carol", "judy")
	e.listed()
}

// A user who provisions through the module between the import's read and
// its write: Vault refuses the import's check-and-set write, the import
// reads again and skips the user, and the newer record stays.
func TestProvisioningDuringImportIntoVault(t *testing.T) {
	for _, kv := range []int{2, 1} {
		t.Run(fmt.Sprintf("kv%d", kv), func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "tokens.db")
			f := generate(t, "--sqlite", db)
			e := newVaultEnv(t, kv, tokenAuth)
			fresh := Record{UserID: "alice", AppPassword: "provisioned-during-the-import", Scopes: []string{}, CreatedAt: 1800000000, UpdatedAt: 1800000000}
			var once sync.Once
			e.beforePut = func(uid string) {
				if uid == "alice" {
					once.Do(func() { e.seed(fresh) })
				}
			}
			st := e.store()
			code, out, errOut := cliWith(t, st.open, map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, "--from", "sqlite:///"+db, "--config", e.caddyfile)
			if code != exitFailed || !strings.Contains(out, "\nskipped alice: Vault has a newer record (updated_at 1800000000 > 1700000000)\n") ||
				!strings.HasSuffix(out, "\n4 imported, 1 skipped, 4 failed\n") {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			if got := e.snapshot()["alice"]; !reflect.DeepEqual(got, fresh) {
				t.Errorf("alice's record: %+v, want the one provisioned meanwhile", got)
			}
		})
	}
}

// A Vault that refuses the login stops the run before any user: exit 2,
// no line on stdout, nothing written, and the token not shown.
func TestVaultLoginRefusedStopsTheRun(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	e := newVaultEnv(t, 2, func(*vaultEnv) string { return "token not-a-valid-token-s3cret" })
	code, out, errOut := cliWith(t, e.store().open, map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, "--from", "sqlite:///"+db, "--config", e.caddyfile)
	wantErr := "import-mcp-db: --config " + e.caddyfile + ": vault token: token: permission denied"
	if code != exitUsage || out != "" || !strings.HasPrefix(errOut, wantErr) {
		t.Errorf("exit %d, stdout %q, stderr %q\nwant exit 2, stderr starting %q", code, out, errOut, wantErr)
	}
	noSecrets(t, errOut, "not-a-valid-token-s3cret")
	if ids := e.ids(); len(ids) != 0 {
		t.Errorf("wrote %v", ids)
	}
}

// A token revoked in the middle of the run: the users before it are
// imported, each one after it fails on a line of its own (Vault's error
// texts span lines), and the run exits 1.
func TestTokenRevokedMidRun(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	var token string
	e := newVaultEnv(t, 2, func(e *vaultEnv) string {
		sec, err := e.vault.Root.Auth().Token().CreateWithContext(t.Context(), &api.TokenCreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		token = sec.Auth.ClientToken
		return "token " + token
	})
	e.beforePut = func(uid string) {
		if uid == "bob" {
			if err := e.vault.Root.Auth().Token().RevokeTreeWithContext(t.Context(), token); err != nil {
				t.Error(err)
			}
		}
	}
	code, out, errOut := cliWith(t, e.store().open, map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, "--from", "sqlite:///"+db, "--config", e.caddyfile)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var got []string
	for _, l := range lines {
		// The reason after "writing to Vault: " / "reading Vault: " is
		// Vault's; the kind before it is the import's.
		if i := strings.Index(l, "Vault: permission denied: "); i >= 0 {
			l = l[:i+len("Vault: permission denied")]
		}
		got = append(got, l)
	}
	want := []string{
		`failed "../heidi": ` + whyUserID,
		"imported alice",
		"failed bob: writing to Vault: permission denied",
		"failed carol: reading Vault: permission denied",
		"failed dave: " + whyDecrypt,
		"failed erin: " + whyDecrypt,
		"failed frank: reading Vault: permission denied",
		"failed grace: " + whyScopes,
		"failed judy: reading Vault: permission denied",
		"1 imported, 0 skipped, 8 failed",
	}
	if code != exitFailed || !slices.Equal(got, want) {
		t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 1 and the lines\n%s", code, out, errOut, strings.Join(want, "\n"))
	}
	noSecrets(t, out+errOut, append(f.secrets(), token)...)
}
