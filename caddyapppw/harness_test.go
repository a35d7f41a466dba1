package caddyapppw

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

// The tests that run Caddy run one at a time: Caddy has one running
// config per process. In the full suite (scripts/test) they share one dev
// Vault per package run, each test under its own path prefix. Under
// -short (the fast lane) the handler keeps its records in a memory store
// instead (the storeForTests seam) and no Vault is built or started: the
// same Caddyfile, the same request path, in seconds. A test that asserts
// what only a real Vault shows (policies, auth methods, KV v1, TLS to
// Vault, outages) says so with needsVault, and the fast lane skips it; the
// full suite never does.

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

// needsVault skips the test under -short, where there is no Vault: it
// asserts what only the real one shows. In the full suite it does nothing.
func needsVault(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the dev Vault: the full suite (scripts/test) runs it, -short does not")
	}
}

// vaultServer is the package's shared dev Vault; under -short the test is
// skipped (needsVault).
func vaultServer(t *testing.T) *devvault.Server {
	t.Helper()
	needsVault(t)
	sharedVaultOnce.Do(func() { sharedVault, sharedVaultErr = devvault.Run(devvault.Options{}) })
	if sharedVaultErr != nil {
		t.Fatal(sharedVaultErr)
	}
	return sharedVault
}

// fakeClock is the clock the handlers read in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one Caddy with the module in front of a recording backend, a
// fake Nextcloud and the dev Vault, or under -short the memory store.
type env struct {
	t        *testing.T
	vault    *devvault.Server // nil under -short
	mem      *memStore        // the handler's store under -short, else nil
	nc       *fakenextcloud.Server
	backend  *backend
	clock    *fakeClock
	base     string // http://127.0.0.1:port of the site
	admin    string // host:port of the admin API
	logFile  string
	prefix   string // Vault path prefix of this test
	settings string // extra lines of the app_password block
	port     int
	client   *http.Client
	// vaultAddr and vaultAuth are the vault block's address and its
	// auth lines; by default the dev Vault and its root token.
	vaultAddr, vaultAuth string
	mount                string
	kv                   int    // KV version of mount
	globals              string // more global options
	sites                string // more site blocks (e.g. a load balancer)
	// fixedPort keeps the site's port across configs. By default each
	// config gets a new one: when two configs share a listener, a new
	// connection can land on the old server in the instant it shuts down,
	// which is Caddy's to handle and not what these tests are about.
	fixedPort bool
	// memDefaults are the vault block's address, auth lines, mount and
	// prefix newEnv chose: under -short a test that changes them is
	// configuring a Vault it does not have.
	memDefaults [4]string
}

// The vault block of the fast lane's Caddyfiles: valid, and never
// contacted (.invalid does not resolve).
const (
	memVaultAddr = "http://vault.invalid:8200"
	memVaultAuth = "token memory-store-not-a-vault-token"
)

// memory reports whether the handler's store is the memory store (-short):
// assertions only a real Vault can answer are left out then.
func (e *env) memory() bool { return e.mem != nil }

// newEnv starts everything and loads a Caddyfile whose app_password block
// has the extra lines given.
func newEnv(t *testing.T, settings string) *env {
	t.Helper()
	e := &env{
		t:        t,
		nc:       fakenextcloud.New(t),
		backend:  newBackend(t),
		clock:    &fakeClock{t: time.Unix(1_800_000_000, 0)},
		logFile:  filepath.Join(t.TempDir(), "caddy.log"),
		prefix:   "test/" + strings.ReplaceAll(t.Name(), "/", "_"),
		settings: settings,
		port:     freePort(t),
		admin:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		client:   &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}
	e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	if testing.Short() {
		// The vault block stays in the Caddyfile, checked as always;
		// nothing connects to its address.
		e.mem = newMemStore()
		e.vaultAddr, e.vaultAuth = memVaultAddr, memVaultAuth
		oldStore := storeForTests
		storeForTests = func() store { return e.mem }
		t.Cleanup(func() { storeForTests = oldStore })
	} else {
		e.vault = vaultServer(t)
		e.vaultAddr, e.vaultAuth = e.vault.Addr, "token "+e.vault.Token
	}
	e.mount, e.kv = "secret", 2
	e.memDefaults = [4]string{e.vaultAddr, e.vaultAuth, e.mount, e.prefix}
	old := clock
	clock = e.clock.Now
	t.Cleanup(func() {
		_ = caddy.Stop()
		e.client.CloseIdleConnections()
		clock = old
	})
	e.load(e.caddyfile(settings))
	return e
}

func (e *env) caddyfile(settings string) string {
	e.t.Helper()
	if e.memory() && [4]string{e.vaultAddr, e.vaultAuth, e.mount, e.prefix} != e.memDefaults {
		e.t.Fatalf("under -short there is no Vault, but the test configures one (address %q, auth %q, mount %q, prefix %q): call needsVault(t) at its start",
			e.vaultAddr, e.vaultAuth, e.mount, e.prefix)
	}
	if !e.fixedPort {
		e.port = freePort(e.t)
		e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	}
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
	log {
		output file %s
		format json
		level DEBUG
	}
	%s
}

http://127.0.0.1:%d {
	app_password {
		nextcloud %s
		vault %s {
			%s
			mount %s
			path_prefix %s
		}
		%s
	}
	reverse_proxy %s {
		flush_interval -1
	}
}
%s`, e.admin, e.logFile, e.globals, e.port, e.nc.URL, e.vaultAddr, e.vaultAuth, e.mount, e.prefix, settings, e.backend.URL, e.sites)
}

// load adapts a Caddyfile and runs it, as `caddy run` does.
func (e *env) load(caddyfileText string) {
	e.t.Helper()
	cfg := adapt(e.t, caddyfileText)
	if err := caddy.Load(cfg, true); err != nil {
		e.t.Fatalf("loading config: %v", err)
	}
	// The old config's server closes its idle connections.
	e.client.CloseIdleConnections()
}

// reload posts a new Caddyfile to the admin API's /load, as `caddy reload`
// does.
func (e *env) reload(caddyfileText string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.admin+"/load", strings.NewReader(caddyfileText))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	e.client.CloseIdleConnections()
}

func adapt(t *testing.T, caddyfileText string) []byte {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v", err)
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "not formatted") {
			t.Logf("adapt warning: %s", w.Message)
		}
	}
	return cfg
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// answer is an HTTP answer read whole.
type answer struct {
	status int
	header http.Header
	body   string
}

// call sends one request to the site. auth is "user:password" for
// BasicAuth, or a raw Authorization value when it starts with "raw:".
func (e *env) call(method, path, auth, body string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(auth, "raw:"):
		req.Header.Set("Authorization", strings.TrimPrefix(auth, "raw:"))
	case auth != "":
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(auth)))
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// expect checks status and exact body, and the headers every API answer
// carries.
func (a answer) expect(t *testing.T, status int, body string) {
	t.Helper()
	if a.status != status || a.body != body {
		t.Fatalf("got %d %s\nwant %d %s", a.status, a.body, status, body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := a.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
}

// secretPath is where the record of uid lives in this test's Vault prefix.
func (e *env) secretPath(uid string) string { return e.prefix + "/" + uid }

// stored reads uid's record straight from the store, Vault or memory, as
// the Vault client reads it (numbers as json.Number); nil when absent.
func (e *env) stored(uid string) map[string]any {
	e.t.Helper()
	if e.memory() {
		data, _, err := e.mem.fields(uid)
		if err != nil {
			e.t.Fatal(err)
		}
		return data
	}
	var (
		sec *api.KVSecret
		err error
	)
	if e.kv == 1 {
		sec, err = e.vault.Root.KVv1(e.mount).Get(e.t.Context(), e.secretPath(uid))
	} else {
		sec, err = e.vault.Root.KVv2(e.mount).Get(e.t.Context(), e.secretPath(uid))
	}
	if err != nil {
		if strings.Contains(err.Error(), api.ErrSecretNotFound.Error()) {
			return nil
		}
		e.t.Fatal(err)
	}
	return sec.Data
}

// readableVersions lists the versions of uid's secret whose data can still
// be read. The memory store keeps no older version: there it is the
// current one, numbered as Vault numbers it.
func (e *env) readableVersions(uid string) []int {
	e.t.Helper()
	if e.memory() {
		data, version, err := e.mem.fields(uid)
		if err != nil {
			e.t.Fatal(err)
		}
		if data == nil {
			return nil
		}
		return []int{version}
	}
	versions, err := e.vault.Root.KVv2(e.mount).GetVersionsAsList(e.t.Context(), e.secretPath(uid))
	if err != nil {
		if strings.Contains(err.Error(), api.ErrSecretNotFound.Error()) {
			return nil
		}
		e.t.Fatal(err)
	}
	var out []int
	for _, v := range versions {
		if !v.Destroyed && v.DeletionTime.IsZero() {
			out = append(out, v.Version)
		}
	}
	return out
}

// putRecord writes a record straight into the store (in Vault as root),
// as an operator or an older version of the module might have left it.
func (e *env) putRecord(uid string, data map[string]any) {
	e.t.Helper()
	var err error
	switch {
	case e.memory():
		err = e.mem.put(uid, data)
	case e.kv == 1:
		err = e.vault.Root.KVv1(e.mount).Put(e.t.Context(), e.secretPath(uid), data)
	default:
		_, err = e.vault.Root.KVv2(e.mount).Put(e.t.Context(), e.secretPath(uid), data)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

// softDelete deletes the current version of uid's secret and keeps the
// rest, as an operator's "vault kv delete" does on KV v2.
func (e *env) softDelete(uid string) {
	e.t.Helper()
	if e.memory() {
		e.mem.softDelete(uid)
		return
	}
	if err := e.vault.Root.KVv2(e.mount).Delete(e.t.Context(), e.secretPath(uid)); err != nil {
		e.t.Fatal(err)
	}
}

// logLines returns the module's log lines (logger http.handlers.app_password).
func (e *env) logLines() []map[string]any {
	e.t.Helper()
	return e.logLinesOf("http.handlers.app_password")
}

// logLinesOf returns the log lines of one logger.
func (e *env) logLinesOf(logger string) []map[string]any {
	e.t.Helper()
	data, err := os.ReadFile(e.logFile)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(data, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["logger"] == logger {
			out = append(out, m)
		}
	}
	return out
}

// backend is the stand-in for the MCP server: it records what reaches it.
type backend struct {
	URL  string
	mu   sync.Mutex
	seen []seenRequest
	srv  *http.Server
	// sse, when set, receives a channel per streamed request on which the
	// test releases each next event.
	sse chan chan struct{}
}

type seenRequest struct {
	method, uri string
	header      http.Header
	body        []byte
}

func newBackend(t *testing.T) *backend {
	b := &backend{sse: make(chan chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.URL = ln.Addr().String()
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve)}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.seen = append(b.seen, seenRequest{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: body})
	b.mu.Unlock()

	if r.URL.Path == "/sse" {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		next := make(chan struct{})
		b.sse <- next
		for i := range 3 {
			<-next
			fmt.Fprintf(w, "event: progress\ndata: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
		return
	}
	w.Header().Set("X-Backend", "mcp")
	w.WriteHeader(http.StatusTeapot)
	_, _ = w.Write([]byte("backend:" + r.Method + " " + r.RequestURI))
}

func (b *backend) requests() []seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenRequest(nil), b.seen...)
}

// causeLogged reports whether a 5xx log line of the module gives a cause
// that starts with prefix (a kind such as "sealed: ").
func (e *env) causeLogged(prefix string) bool {
	e.t.Helper()
	for _, l := range e.logLines() {
		if c, _ := l["cause"].(string); strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

// fourWorkersUntil runs send from four goroutines until until, read under
// mu, holds: load that keeps a server busy through a fault.
func fourWorkersUntil(mu *sync.Mutex, until func() bool, send func()) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				mu.Lock()
				done := until()
				mu.Unlock()
				if done {
					return
				}
				send()
			}
		})
	}
	wg.Wait()
}
