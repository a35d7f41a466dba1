package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/readme"
)

// README.md's shell commands, run as printed. Each ```sh block is split
// into the commands a reader copies (one a line, backslash-continued),
// and each runs in bash, in order, in a copy of the checkout, so that what
// the commands build lands there. What a command must do follows from
// what it is, not from its exact text, so a README that changes a command
// still has it run:
//   - it exits 0;
//   - every executable it leaves in the checkout is a Caddy that lists
//     http.handlers.app_password, or the importer (import-mcp-db), which
//     must answer --help with its usage and exit 0; a command that lists
//     modules prints it;
//   - a command that reads a stored state (`caddy app-password list`,
//     `caddy app-password sweep`, `import-mcp-db`) meets the world the
//     README names in its variables — CADDY_CONFIG (Caddyfile.example),
//     the dev Vault in VAULT_ADDR, a Nextcloud in NEXTCLOUD_URL, the MCP
//     server's SQLite database in DATABASE_URL with its key in
//     TOKEN_ENCRYPTION_KEY — and must leave Vault as its output says,
//     and print what README.md's sample after it shows, the variable
//     parts aside (readme_samples_test.go);
//   - a command that serves (`caddy run`, `scripts/run`) must come up,
//     store an app password in Vault and pass other requests on, and is
//     then stopped.
// The commands this test does not run are listed in notRun with the
// reason; a block in any other language than sh or caddyfile fails, so
// that no command hides from the test.

// serveCommand matches the commands that serve until stopped: Caddy's run
// subcommand (also inside `podman run … caddy run --config`), and
// scripts/run, which starts its own dev Vault.
var (
	serveCommand    = regexp.MustCompile(`(^|\s)run\s+--config\s`)
	scriptsRun      = regexp.MustCompile(`^(\./)?scripts/run(\s|$)`)
	scriptsTest     = regexp.MustCompile(`^(\./)?scripts/test(\s|$)`)
	kubectl         = regexp.MustCompile(`^kubectl\s`)
	listModules     = regexp.MustCompile(`\blist-modules\b`)
	trailingComment = regexp.MustCompile(`\s+#[^'"]*$`)
	devVaultBanner  = regexp.MustCompile(`DEV VAULT at (\S+)`)
	devVaultToken   = regexp.MustCompile(`root token: (\S+)`)
)

// plainBlocks are README.md's fenced blocks without a language, by how
// they start: output and a file tree, no commands.
var plainBlocks = []string{
	"app_password handler 1 of 1",
	"caddyapppw/ ",
	"secret/nextcloud-mcp/app-passwords at ", // caddy app-password list
	"sweep of ",                              // caddy app-password sweep
	"would import ",                          // import-mcp-db --dry-run
	"imported ",                              // import-mcp-db
}

const appPasswordModule = "http.handlers.app_password"

func TestREADMECommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy several times (minutes): the full suite runs it")
	}
	blocks, err := readme.Load("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := copyCheckout(t, "..")
	gobin := t.TempDir()
	env := commandEnv(t, gobin)
	state := newStateWorld(t)
	stateEnv := append(slices.Clip(env), state.env...)

	var ran, notRun []string
	seen := map[string]string{} // command without its comment → the block it ran in
	samples := samplesAfter(blocks)
	for _, b := range blocks {
		switch b.Lang {
		case "caddyfile":
			continue // caddyapppw's TestREADMESnippets loads each one into Caddy
		case "":
			if !knownPlainBlock(b.Text) {
				t.Fatalf("README.md line %d: a fenced block without a language; mark commands ```sh, or name the block in plainBlocks", b.Line)
			}
			continue
		case "sh":
		default:
			t.Fatalf("README.md line %d: a ```%s block: mark shell commands ```sh so that this test runs them", b.Line, b.Lang)
		}
		if strings.Contains(b.Text, "/v1/sys/policies/acl/") {
			notRun = append(notRun, fmt.Sprintf("line %d, the Vault setup: caddyapppw's TestREADMEVaultSetup runs it against the dev Vault", b.Line))
			continue
		}
		for _, cmd := range readme.Commands(b) {
			where := fmt.Sprintf("README.md line %d: %s", b.Line, firstLine(cmd))
			key := trailingComment.ReplaceAllString(cmd, "")
			// A command repeated in a later block (Deploying, then
			// Building) runs once; within a block each runs, since what
			// it acts on may have changed.
			if first, ok := seen[key]; ok && first != fmt.Sprintf("line %d", b.Line) {
				notRun = append(notRun, where+": the same command ran at "+first)
				continue
			}
			seen[key] = fmt.Sprintf("line %d", b.Line)
			switch {
			case scriptsTest.MatchString(cmd):
				notRun = append(notRun, where+": the suite this test is part of (.ci/run runs it)")
			case kubectl.MatchString(cmd):
				notRun = append(notRun, where+": needs a Kubernetes cluster; TestDeployPod applies deploy/kubernetes/ with podman kube play")
			case scriptsRun.MatchString(cmd):
				runServing(t, where, dir, env, cmd, true)
				ran = append(ran, where)
			case serveCommand.MatchString(cmd):
				runServing(t, where, dir, env, cmd, false)
				ran = append(ran, where)
			default:
				out := runToEnd(t, where, dir, stateEnv, cmd)
				state.check(t, where, cmd, out)
				if sample, ok := samples[b.Line]; ok && onStoredState(cmd) {
					state.matchSample(t, where, cmd, out, sample)
				}
				ran = append(ran, where)
			}
		}
	}
	t.Logf("ran:\n  %s", strings.Join(ran, "\n  "))
	t.Logf("not run here:\n  %s", strings.Join(notRun, "\n  "))
	t.Logf("commands on stored state, checked against Vault: %s", strings.Join(state.checksRan, ", "))
}

func knownPlainBlock(text string) bool {
	for _, p := range plainBlocks {
		if strings.HasPrefix(text, p) {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// copyCheckout copies the checkout's files (not .git, not build outputs)
// to a temporary directory, modes kept.
func copyCheckout(t *testing.T, root string) string {
	t.Helper()
	dst := t.TempDir()
	skip := map[string]bool{".git": true, "bin": true, "caddy": true, "build-caddy": true, "import-mcp-db": true}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		if (filepath.Dir(rel) == "." && skip[rel]) || strings.HasSuffix(rel, ".test") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// commandEnv is this process's environment for the README's commands:
// Go installs into gobin, which comes first on PATH; Caddy keeps its data
// in the test's directories; no VAULT_* or service address of the caller
// leaks in.
func commandEnv(t *testing.T, gobin string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "VAULT_"), name == "GOBIN", name == "PATH", name == "SITE_ADDRESS", name == "CADDY_ADMIN",
			name == "NEXTCLOUD_URL", name == "MCP_UPSTREAM", name == "DEV_VAULT_LISTEN", strings.HasPrefix(name, "XDG_DATA"), strings.HasPrefix(name, "XDG_CONFIG"):
			continue
		}
		env = append(env, kv)
	}
	data := t.TempDir()
	return append(env, "GOBIN="+gobin, "PATH="+gobin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"XDG_DATA_HOME="+data, "XDG_CONFIG_HOME="+data)
}

// executables maps each executable file under dir to its modification
// time.
func executables(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if info, err := d.Info(); err == nil && info.Mode().Perm()&0o111 != 0 {
			out[path] = info.ModTime()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runToEnd runs a command that ends, then checks what it printed and every
// executable it made. It returns the command's standard output.
func runToEnd(t *testing.T, where, dir string, env []string, cmd string) string {
	t.Helper()
	before := executables(t, dir)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", cmd)
	c.Dir, c.Env = dir, env
	// Stdout and stderr are copied by two goroutines: one lock for both.
	var stdout, combined lockedBuilder
	c.Stdout, c.Stderr = io.MultiWriter(&stdout, &combined), &combined
	err := c.Run()
	out := combined.String()
	if err != nil {
		t.Fatalf("%s: %v\n%s", where, err, out)
	}
	if listModules.MatchString(cmd) && !hasLine(out, appPasswordModule) {
		t.Fatalf("%s: printed no %s line:\n%s", where, appPasswordModule, out)
	}
	for path, mtime := range executables(t, dir) {
		if old, ok := before[path]; ok && old.Equal(mtime) {
			continue
		}
		// A new or rebuilt executable: the importer, or a Caddy with the
		// module.
		if filepath.Base(path) == "import-mcp-db" {
			usage, err := exec.Command(path, "--help").CombinedOutput()
			if err != nil || !strings.HasPrefix(string(usage), "usage: import-mcp-db --from") {
				t.Fatalf("%s built %s, whose --help is not its usage with exit 0 (%v):\n%s", where, path, err, usage)
			}
			t.Logf("%s: %s answers --help with its usage", where, filepath.Base(path))
			continue
		}
		list, err := exec.Command(path, "list-modules").CombinedOutput()
		if err != nil || !hasLine(string(list), appPasswordModule) {
			t.Fatalf("%s built %s, whose list-modules has no %s (%v):\n%s", where, path, appPasswordModule, err, list)
		}
		t.Logf("%s: %s lists %s", where, filepath.Base(path), appPasswordModule)
	}
	return stdout.String()
}

// lockedBuilder is a strings.Builder that several goroutines may write.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// output collects a process's combined output and tells when a line with
// a given text has arrived.
type output struct {
	mu    sync.Mutex
	text  strings.Builder
	lines chan string
}

func watchOutput(r io.Reader) *output {
	o := &output{lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			o.mu.Lock()
			o.text.WriteString(sc.Text() + "\n")
			o.mu.Unlock()
			select {
			case o.lines <- sc.Text():
			default:
			}
		}
		close(o.lines)
	}()
	return o
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.text.String()
}

// waitFor returns once a line holds want; false when the output ends or
// the deadline passes first.
func (o *output) waitFor(want string, deadline time.Duration) bool {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-o.lines:
			if !ok {
				return false
			}
			if strings.Contains(line, want) {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// runServing runs a command that serves Caddyfile.example until stopped,
// with the environment Caddyfile.example and scripts/run read. ownVault:
// the command starts its own dev Vault (scripts/run without VAULT_ADDR)
// and says where; otherwise it gets one in VAULT_ADDR/VAULT_TOKEN.
func runServing(t *testing.T, where, dir string, env []string, cmd string, ownVault bool) {
	t.Helper()
	nc := fakenextcloud.New(t)
	nc.AddUser("alice", "alice@example.com", appPassword)
	upstream, passwords := passThroughBackend(t, nc.URL)
	site, admin := freeAddr(t), freeAddr(t)
	env = append(env, "SITE_ADDRESS=http://"+site, "CADDY_ADMIN="+admin, "NEXTCLOUD_URL="+nc.URL, "MCP_UPSTREAM="+upstream)
	var vault *api.Client
	if ownVault {
		env = append(env, "DEV_VAULT_LISTEN=127.0.0.1:0")
	} else {
		v := devvault.Start(t, devvault.Options{})
		env = append(env, "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token)
		vault = v.Root
	}

	c := exec.Command("bash", "-c", cmd)
	c.Dir, c.Env = dir, env
	// Its own process group, so that stopping it stops what it started
	// (go run's child, scripts/run's Caddy and dev Vault).
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	c.Stdout, c.Stderr = pw, pw
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { err := c.Wait(); _ = pw.Close(); exited <- err }()
	out := watchOutput(pr)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	t.Cleanup(stop)

	// The first run builds Caddy (and scripts/run its dev Vault binary).
	if !out.waitFor("serving initial configuration", 10*time.Minute) {
		stop()
		t.Fatalf("%s: Caddy never served:\n%s", where, out)
	}
	if ownVault {
		m, tok := devVaultBanner.FindStringSubmatch(out.String()), devVaultToken.FindStringSubmatch(out.String())
		if m == nil || tok == nil {
			t.Fatalf("%s: no dev Vault address and token printed:\n%s", where, out)
		}
		cfg := api.DefaultConfig()
		cfg.Address = m[1]
		c, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(tok[1])
		vault = c
	}

	req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+site+"/api/v1/users/alice/app-password", strings.NewReader(`{"username":"alice@example.com"}`))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:"+appPassword)))
	req.Header.Set("Content-Type", "application/json")
	status, body := do(t, req)
	if want := `{"success":true,"message":"App password stored for alice","scopes":null}`; status != 200 || body != want {
		t.Fatalf("%s: POST answered %d %s\n%s", where, status, body, out)
	}
	sec, err := vault.KVv2("secret").Get(t.Context(), "nextcloud-mcp/app-passwords/alice")
	if err != nil || sec.Data["app_password"] != appPassword {
		t.Fatalf("%s: Vault holds %v (%v)", where, sec, err)
	}
	// Caddyfile.example delivers each change to the MCP server too.
	if row, ok := passwords.Get("alice"); !ok || row.Password != appPassword {
		t.Fatalf("%s: the MCP server's table holds %+v (%v)", where, row, ok)
	}
	req, _ = http.NewRequestWithContext(t.Context(), "GET", "http://"+site+"/mcp/tools", nil)
	if status, body := do(t, req); status != 200 || body != "mcp saw GET /mcp/tools" {
		t.Fatalf("%s: pass-through answered %d %s", where, status, body)
	}
	stop()
	t.Logf("%s: served, stored alice's app password in Vault and the MCP server, passed /mcp/tools on", where)
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
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

// passThroughBackend stands in for the MCP server: it says what it saw,
// except on the MCP server's own app-password routes (/api/v1/users/...),
// which the double of internal/fakemcp serves, checking passwords against
// nextcloudURL: Caddyfile.example delivers each change there.
func passThroughBackend(t *testing.T, nextcloudURL string) (string, *fakemcp.Handler) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	passwords := fakemcp.NewHandler(nextcloudURL)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/users/", passwords)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "mcp saw %s %s", r.Method, r.URL.Path)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), passwords
}

// The commands on stored state, told apart by what they run.
var (
	appPasswordList  = regexp.MustCompile(`\bapp-password\s+list\b`)
	appPasswordSweep = regexp.MustCompile(`\bapp-password\s+sweep\b`)
	dryRunFlag       = regexp.MustCompile(`\s--dry-run\b`)
)

// isImporterRun says whether a command runs the importer (rather than,
// say, building it).
func isImporterRun(cmd string) bool {
	f := strings.Fields(cmd)
	return len(f) > 0 && filepath.Base(f[0]) == "import-mcp-db"
}

const mcpVaultPrefix = "nextcloud-mcp/app-passwords/"

// mcpRow is a row of the MCP server's app_passwords table, in clear.
type mcpRow struct {
	userID, password string
	username         any // string or nil (NULL)
	scopes           any // JSON text or nil (NULL)
	want             []any
}

// stateWorld is what the README's commands on stored state meet: a dev
// Vault holding two users the module stored (Nextcloud accepts "kept"'s
// password and rejects "revoked"'s), a fake Nextcloud, Caddyfile.example
// as the config, and an MCP server's SQLite database with two users the
// import must copy.
type stateWorld struct {
	vault     *devvault.Server
	env       []string
	rows      []mcpRow
	secrets   []string // no command may print one
	imported  bool
	checksRan []string
}

func newStateWorld(t *testing.T) *stateWorld {
	t.Helper()
	w := &stateWorld{vault: devvault.Start(t, devvault.Options{})}
	nc := fakenextcloud.New(t)
	const keptPW, revokedPW = "Kept0-Passw-ord00-Valid-Still", "Revok-edPas-sword-Nextc-loud0"
	nc.AddUser("kept", "", keptPW)
	nc.AddUser("revoked", "", "Newer-Passw-ordOf-Revok-ed000") // the stored one was revoked
	for id, pw := range map[string]string{"kept": keptPW, "revoked": revokedPW} {
		_, err := w.vault.Root.KVv2("secret").Put(t.Context(), mcpVaultPrefix+id, map[string]any{
			"user_id": id, "app_password": pw, "username": nil, "scopes": nil, "created_at": 1700000000, "updated_at": 1700000000,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	w.rows = []mcpRow{
		{userID: "carol", password: "Carol-Passw-ordFr-omThe-MCPdb", username: nil, scopes: nil},
		{userID: "dave", password: "Dave0-Passw-ordFr-omThe-MCPdb", username: "dave@example.com", scopes: `["notes.read"]`},
	}
	w.secrets = []string{keptPW, revokedPW, w.rows[0].password, w.rows[1].password, w.vault.Token}
	// Nextcloud accepts the imported users' passwords: a sweep after the
	// import keeps them.
	nc.AddUser("carol", "", w.rows[0].password)
	nc.AddUser("dave", "dave@example.com", w.rows[1].password)

	// The MCP server's database, written by Python's sqlite3 with a token
	// of Python's cryptography, as the MCP server writes it.
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 not found: the README's import commands need an MCP server database (apt-get install python3-cryptography)")
	}
	db := filepath.Join(t.TempDir(), "tokens.db")
	var rows []string
	for _, r := range w.rows {
		rows = append(rows, fmt.Sprintf("(%q, %q, %s, %s)", r.userID, r.password, pyValue(r.username), pyValue(r.scopes)))
	}
	script := `import sqlite3, sys
from cryptography.fernet import Fernet
key = Fernet.generate_key()
f = Fernet(key)
db = sqlite3.connect(sys.argv[1])
db.executescript("""CREATE TABLE app_passwords (
	user_id TEXT NOT NULL,
	encrypted_password BLOB NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (user_id)
);
CREATE INDEX idx_app_passwords_updated ON app_passwords (updated_at);
ALTER TABLE app_passwords ADD COLUMN scopes TEXT;
ALTER TABLE app_passwords ADD COLUMN username TEXT;""")
for uid, pw, username, scopes in [` + strings.Join(rows, ", ") + `]:
    db.execute("INSERT INTO app_passwords VALUES (?, ?, 1690000000, 1690000100, ?, ?)", (uid, f.encrypt(pw.encode()), scopes, username))
db.commit()
print(key.decode())
`
	out, err := exec.Command("python3", "-c", script, db).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("writing the MCP server's database: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(out))
	w.secrets = append(w.secrets, key)
	w.env = []string{
		"CADDY_CONFIG=Caddyfile.example",
		"VAULT_ADDR=" + w.vault.Addr, "VAULT_TOKEN=" + w.vault.Token,
		"NEXTCLOUD_URL=" + nc.URL,
		"DATABASE_URL=sqlite:///" + db, // sqlite:////abs/path
		"TOKEN_ENCRYPTION_KEY=" + key,
	}
	return w
}

func pyValue(v any) string {
	if v == nil {
		return "None"
	}
	return fmt.Sprintf("%q", v)
}

// stored returns the users Vault holds, with their records.
func (w *stateWorld) stored(t *testing.T) map[string]map[string]any {
	t.Helper()
	sec, err := w.vault.Root.Logical().ListWithContext(t.Context(), "secret/metadata/"+mcpVaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	if sec == nil {
		return out
	}
	for _, k := range sec.Data["keys"].([]any) {
		id := k.(string)
		if strings.HasSuffix(id, "/") {
			continue // the sweep's lease folder
		}
		kv, err := w.vault.Root.KVv2("secret").Get(t.Context(), mcpVaultPrefix+id)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = kv.Data
	}
	return out
}

// check holds a command on stored state to what it printed: Vault must
// hold what the output says, and the output no secret.
func (w *stateWorld) check(t *testing.T, where, cmd, out string) {
	t.Helper()
	var kind string
	switch {
	case appPasswordList.MatchString(cmd):
		kind = "list"
	case appPasswordSweep.MatchString(cmd):
		kind = "sweep"
	case isImporterRun(cmd):
		kind = "import"
	default:
		return
	}
	if dryRunFlag.MatchString(cmd) {
		kind += " --dry-run"
	}
	for _, s := range w.secrets {
		if strings.Contains(out, s) {
			t.Fatalf("%s printed a password, the Fernet key or the Vault token:\n%s", where, out)
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s\noutput:\n%s", where, fmt.Sprintf(format, args...), out)
	}
	stored := w.stored(t)
	switch kind {
	case "list", "list --dry-run":
		for id := range stored {
			if !strings.Contains(out, id) {
				fail("Vault holds %s, the list does not show it", id)
			}
		}
	case "sweep --dry-run":
		if !strings.Contains(out, "would delete revoked: nextcloud rejects its password") || stored["revoked"] == nil {
			fail("want revoked listed as would-be deleted and still in Vault (Vault holds %d users)", len(stored))
		}
	case "sweep":
		if !strings.Contains(out, "deleted revoked: nextcloud rejects its password") || stored["revoked"] != nil || stored["kept"] == nil {
			fail("want revoked deleted and kept kept (revoked in Vault: %v, kept: %v)", stored["revoked"] != nil, stored["kept"] != nil)
		}
	case "import --dry-run":
		for _, r := range w.rows {
			if !strings.Contains(out, "would import "+r.userID) || stored[r.userID] != nil && !w.imported {
				fail("want %s to be shown as would-import and not written", r.userID)
			}
		}
	case "import":
		for _, r := range w.rows {
			rec := stored[r.userID]
			var scopes any
			if r.scopes != nil {
				scopes = []any{"notes.read"}
			}
			if !strings.Contains(out, "imported "+r.userID) || rec == nil || rec["app_password"] != r.password ||
				fmt.Sprint(rec["username"]) != fmt.Sprint(r.username) || fmt.Sprint(rec["scopes"]) != fmt.Sprint(scopes) {
				fail("want %s imported; Vault holds %v", r.userID, rec)
			}
		}
		w.imported = true
	}
	w.checksRan = append(w.checksRan, kind)
	t.Logf("%s: Vault holds what it printed (%s)", where, kind)
}
