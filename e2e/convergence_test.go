package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// flakyMCP is the MCP server's double on a fixed address that the test
// takes down (connections refused), makes answer 503 (as a proxy in front
// of a crashed MCP server does), and brings back, with its table intact.
type flakyMCP struct {
	*fakemcp.Handler
	t    *testing.T
	addr string

	mu   sync.Mutex
	srv  *http.Server
	fail bool
}

func newFlakyMCP(t *testing.T, nextcloudURL string) *flakyMCP {
	m := &flakyMCP{Handler: fakemcp.NewHandler(nextcloudURL), t: t, addr: freeAddr(t)}
	m.up()
	t.Cleanup(m.down)
	return m
}

func (m *flakyMCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	fail := m.fail
	m.mu.Unlock()
	if fail {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"detail":"Service Unavailable"}`)
		return
	}
	m.Handler.ServeHTTP(w, r)
}

func (m *flakyMCP) up() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = false
	if m.srv != nil {
		return
	}
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		m.t.Fatal(err)
	}
	m.srv = &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
	go func(srv *http.Server) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.t.Error(err)
		}
	}(m.srv)
}

func (m *flakyMCP) down() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil {
		_ = m.srv.Close()
		m.srv = nil
	}
}

func (m *flakyMCP) failing() {
	m.up()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = true
}

// convUser is one user of the convergence test: uid, login name, first
// and second app password.
type convUser struct{ uid, login, pw1, pw2 string }

// replicaCaddyfile is one of several Caddy replicas sharing one Vault and
// one Redis, each delivering to the same MCP server.
const replicaCaddyfile = `{
	admin {$CADDY_ADMIN}
}
http://{$SITE} {
	app_password {
		nextcloud {$NEXTCLOUD_URL}
		vault {$VAULT_ADDR} {
			token {$VAULT_TOKEN}
		}
		rate_limit 5 1h {
			redis redis://{$REDIS_ADDR}
		}
		deliver_to_mcp {$MCP} {
			interval 200ms
		}
	}
	reverse_proxy {$MCP}
}
`

// The convergence promise, against two real Caddy replicas on one Vault
// and one Redis: 20 users (half of them with e-mail logins) provision,
// then change scopes, delete and re-provision while the MCP server is
// unreachable and then answers 503; once it is back, with no client
// request and after both replicas restarted, Vault and the MCP server's
// table agree for every user: present in both or in neither, with the same
// password, login name and scopes.
func TestConvergenceTwoReplicas(t *testing.T) {
	bin := caddyBinary(t)
	vault := devvault.Start(t, devvault.Options{})
	redis := redistest.Start(t)
	nc := fakenextcloud.New(t)
	mcpSrv := newFlakyMCP(t, nc.URL)

	var users []convUser
	for i := range 20 {
		u := convUser{uid: fmt.Sprintf("user%02d", i), pw1: fmt.Sprintf("Aaaaa-Bbbbb-Ccccc-Ddddd-E%04d", i), pw2: fmt.Sprintf("Zzzzz-Yyyyy-Xxxxx-Wwwww-V%04d", i)}
		u.login = u.uid
		if i%2 == 1 {
			u.login = u.uid + "@example.com"
		}
		nc.AddUser(u.uid, u.login, u.pw1, u.pw2)
		users = append(users, u)
	}

	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(replicaCaddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	// replicas starts two Caddy replicas and returns their addresses and
	// a function that stops both.
	replicas := func() ([]string, func()) {
		var sites []string
		var procs []*caddyproc.Process
		for range 2 {
			site := freeAddr(t)
			p, err := caddyproc.Start(bin, file, t.TempDir(),
				"SITE="+site, "CADDY_ADMIN="+freeAddr(t), "NEXTCLOUD_URL="+nc.URL,
				"VAULT_ADDR="+vault.Addr, "VAULT_TOKEN="+vault.Token, "REDIS_ADDR="+redis.Addr, "MCP="+mcpSrv.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Stop)
			sites, procs = append(sites, site), append(procs, p)
		}
		return sites, func() {
			for _, p := range procs {
				p.Stop()
			}
		}
	}
	sites, stopReplicas := replicas()

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	n := 0
	call := func(method, uid, pw, path, body string) int {
		n++ // round robin over the replicas
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+sites[n%2]+"/api/v1/users/"+uid+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(uid+":"+pw)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	expect := func(want, got int, what string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: %d, want %d", what, got, want)
		}
	}

	// Astrolabe provisions everyone while the MCP server is up.
	for _, u := range users {
		expect(200, call("POST", u.uid, u.pw1, "/app-password", `{"username": "`+u.login+`"}`), "POST "+u.uid)
	}
	// Unreachable: operators narrow scopes (users 0-9), Astrolabe revokes
	// (10-14) with its bodiless DELETE.
	mcpSrv.down()
	for _, u := range users[:10] {
		expect(502, call("PATCH", u.uid, u.pw1, "/scopes", `{"scopes": ["notes.read"]}`), "PATCH "+u.uid)
	}
	for _, u := range users[10:15] {
		expect(502, call("DELETE", u.uid, u.pw1, "/app-password", ""), "DELETE "+u.uid)
	}
	// 503: re-provisioning with new passwords (15-19), scopes again (0-4).
	mcpSrv.failing()
	for _, u := range users[15:] {
		expect(502, call("POST", u.uid, u.pw2, "/app-password", `{"username": "`+u.login+`", "scopes": ["deck.read"]}`), "POST again "+u.uid)
	}
	for _, u := range users[:5] {
		expect(502, call("PATCH", u.uid, u.pw1, "/scopes", `{"scopes": ["files.read", "files.write"]}`), "PATCH again "+u.uid)
	}

	// Both replicas restart (a rollout) while the MCP server is still
	// failing: what is owed is in Vault, not in their memory.
	stopReplicas()
	_, _ = replicas()

	// Back: no client request from here on.
	clientRequests := len(mcpSrv.Requests())
	back := time.Now()
	mcpSrv.up()
	deadline := back.Add(time.Minute)
	for {
		diffs := differences(ctx, t, vault.Root, mcpSrv.Handler, users)
		if len(diffs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the MCP server came back, Vault and its table differ: %v", diffs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("converged %s after the MCP server came back, with %d re-deliveries", time.Since(back).Round(time.Millisecond), len(mcpSrv.Requests())-clientRequests)

	// And the state is the one the clients asked for.
	for i, u := range users {
		row, has := mcpSrv.Get(u.uid)
		switch {
		case i < 5:
			if !has || row.Password != u.pw1 || !slices.Equal(row.Scopes, []string{"files.read", "files.write"}) {
				t.Errorf("%s: %+v %v", u.uid, row, has)
			}
		case i < 10:
			if !has || !slices.Equal(row.Scopes, []string{"notes.read"}) {
				t.Errorf("%s: %+v %v", u.uid, row, has)
			}
		case i < 15:
			if has {
				t.Errorf("%s: the MCP server keeps a password the user removed", u.uid)
			}
		default:
			if !has || row.Password != u.pw2 || row.Username != u.login || !slices.Equal(row.Scopes, []string{"deck.read"}) {
				t.Errorf("%s: %+v %v", u.uid, row, has)
			}
		}
	}
}

// differences lists the users for whom Vault's record and the MCP
// server's row disagree (or Vault's record still owes a change).
func differences(ctx context.Context, t *testing.T, v *api.Client, m *fakemcp.Handler, users []convUser) []string {
	t.Helper()
	var out []string
	for _, u := range users {
		sec, err := v.KVv2("secret").Get(ctx, "nextcloud-mcp/app-passwords/"+u.uid)
		if err != nil && !errors.Is(err, api.ErrSecretNotFound) {
			t.Fatal(err)
		}
		row, has := m.Get(u.uid)
		switch {
		case sec == nil && !has:
			continue
		case sec == nil || !has:
			out = append(out, u.uid+": present in one only")
			continue
		}
		d := sec.Data
		login, _ := d["username"].(string)
		var scopes []string
		if list, ok := d["scopes"].([]any); ok {
			scopes = []string{}
			for _, s := range list {
				scopes = append(scopes, s.(string))
			}
		}
		if d["mcp_pending"] != nil || d["app_password"] != row.Password || login != row.Username ||
			!slices.Equal(scopes, row.Scopes) || (scopes == nil) != (row.Scopes == nil) {
			out = append(out, fmt.Sprintf("%s: vault %v/%v/%v pending %v, mcp %s/%v", u.uid, d["username"], scopes, d["app_password"] == row.Password, d["mcp_pending"], row.Username, row.Scopes))
		}
	}
	return out
}
