package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

const appPassword = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"

// caddyBinary is $E2E_CADDY_BIN, or a Caddy built here from xcaddy.json
// with cmd/build-caddy (xcaddy's library), as an operator builds it.
func caddyBinary(t *testing.T) string {
	if bin := os.Getenv("E2E_CADDY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "-C", "cmd/build-caddy", "run", ".", "-o", bin)
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building Caddy from xcaddy.json: %v", err)
	}
	return bin
}

// mcpServer is a real MCP server (streamable HTTP) with one tool that
// reports progress and then waits for the test before it finishes, so a
// proxy that buffered the stream would hold the progress back forever.
// On the same listener, as in the Nextcloud MCP server, its own
// app-password routes (/api/v1/users/...) are served by the double of
// internal/fakemcp, checking passwords against nextcloudURL: what
// Caddyfile.example's deliver_to_mcp hands each change on to, through the
// same reverse_proxy as the MCP traffic.
func mcpServer(t *testing.T, release <-chan struct{}, nextcloudURL string) (string, *fakemcp.Handler) {
	server := mcp.NewServer(&mcp.Implementation{Name: "nextcloud-mcp-stand-in", Version: "v1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "sync_notes", Description: "Pretends to sync notes."},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			token := req.Params.GetProgressToken()
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 1, Total: 2, Message: "half way"})
			select {
			case <-release:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 2, Total: 2, Message: "done"})
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "synced 2 notes"}}}, nil, nil
		})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	passwords := fakemcp.NewHandler(nextcloudURL)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/users/", passwords)
	mux.Handle("/", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), passwords
}

func TestDeploymentEndToEnd(t *testing.T) {
	bin := caddyBinary(t)
	vault := devvault.Start(t, devvault.Options{})
	nc := fakenextcloud.New(t)
	nc.AddUser("alice", "alice@example.com", appPassword)
	release := make(chan struct{})
	upstream, passwords := mcpServer(t, release, nc.URL)

	site, admin := freeAddr(t), freeAddr(t)
	caddy, err := caddyproc.Start(bin, "../Caddyfile.example", t.TempDir(),
		"SITE_ADDRESS=http://"+site, "CADDY_ADMIN="+admin,
		"NEXTCLOUD_URL="+nc.URL, "VAULT_ADDR="+vault.Addr, "VAULT_TOKEN="+vault.Token,
		"MCP_UPSTREAM="+upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(caddy.Stop)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// MCP through Caddy: connect, list tools, call one, and see its
	// progress while the call still runs.
	progress := make(chan string, 4)
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "v1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params.Message
		},
	})
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + site + "/mcp"}, nil)
	if err != nil {
		t.Fatalf("MCP connect through Caddy: %v", err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 1 || tools.Tools[0].Name != "sync_notes" {
		t.Fatalf("ListTools: %v %v", tools, err)
	}
	params := &mcp.CallToolParams{Name: "sync_notes", Arguments: map[string]any{}}
	params.SetProgressToken("sync-1")
	type callResult struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan callResult, 1)
	go func() {
		res, err := session.CallTool(ctx, params)
		done <- callResult{res, err}
	}()
	select {
	case msg := <-progress:
		if msg != "half way" {
			t.Fatalf("first progress %q", msg)
		}
	case r := <-done:
		t.Fatalf("the call ended (%v) before its progress arrived", r.err)
	case <-ctx.Done():
		t.Fatal("no progress notification while the tool runs: the stream is buffered")
	}
	close(release)
	r := <-done
	if r.err != nil || len(r.res.Content) != 1 || r.res.Content[0].(*mcp.TextContent).Text != "synced 2 notes" {
		t.Fatalf("CallTool: %+v %v", r.res, r.err)
	}

	// In the same run, Astrolabe provisions, an operator narrows the
	// scopes and Astrolabe revokes, each with the body its caller really
	// sends: Astrolabe's POST only the login name, the operator's PATCH
	// only scopes, Astrolabe's DELETE none. alice logs in with her e-mail
	// address; with Caddyfile.example's deliver_to_mcp each change reaches
	// Vault and the MCP server's own table, the module adding the login
	// name the MCP server needs to prove the password.
	call := func(method, body string) (int, string) {
		path := "/api/v1/users/alice/app-password"
		if method == "PATCH" {
			path = "/api/v1/users/alice/scopes"
		}
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+site+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:"+appPassword)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := call("POST", `{"username": "alice@example.com"}`); status != 200 || body != `{"success":true,"message":"App password stored for alice","scopes":null}` {
		t.Fatalf("POST: %d %s", status, body)
	}
	sec, err := vault.Root.KVv2("secret").Get(ctx, "nextcloud-mcp/app-passwords/alice")
	if err != nil || sec.Data["app_password"] != appPassword || sec.Data["username"] != "alice@example.com" {
		t.Fatalf("Vault after POST: %v %v", sec, err)
	}
	if row, ok := passwords.Get("alice"); !ok || row.Password != appPassword || row.Username != "alice@example.com" {
		t.Fatalf("the MCP server's table after POST: %+v %v", row, ok)
	}
	// Gone means gone precisely: Vault answers 404 with nothing, for the
	// current version and for the metadata (so no version is left to
	// undelete). Any other error — Vault unreachable, a denied policy, a
	// spent context — proves nothing, and a soft-deleted version still
	// answers with its metadata. Both reads find the secret before the
	// DELETE, so a wrong path cannot pass.
	paths := []string{"secret/data/nextcloud-mcp/app-passwords/alice", "secret/metadata/nextcloud-mcp/app-passwords/alice"}
	for _, p := range paths {
		if sec, err := vault.Root.Logical().ReadWithContext(ctx, p); err != nil || sec == nil {
			t.Fatalf("before DELETE, reading %s: %v %v", p, sec, err)
		}
	}
	if status, body := call("PATCH", `{"scopes": ["notes.read"]}`); status != 200 || body != `{"success":true,"message":"Scopes updated successfully","scopes":["notes.read"]}` {
		t.Fatalf("PATCH: %d %s", status, body)
	}
	sec, err = vault.Root.KVv2("secret").Get(ctx, "nextcloud-mcp/app-passwords/alice")
	if err != nil || fmt.Sprint(sec.Data["scopes"]) != "[notes.read]" || sec.Data["mcp_pending"] != nil {
		t.Fatalf("Vault after PATCH: %v %v", sec, err)
	}
	if row, ok := passwords.Get("alice"); !ok || fmt.Sprint(row.Scopes) != "[notes.read]" || row.Password != appPassword {
		t.Fatalf("the MCP server's table after PATCH: %+v %v", row, ok)
	}
	if status, body := call("DELETE", ""); status != 200 || body != `{"success":true,"message":"App password deleted for alice"}` {
		t.Fatalf("DELETE: %d %s", status, body)
	}
	if _, ok := passwords.Get("alice"); ok || passwords.Len() != 0 {
		t.Fatal("the MCP server's table still holds alice after DELETE")
	}
	if got := passwords.Requests(); len(got) != 3 || got[0].Method != "POST" || got[1].Method != "PATCH" || got[2].Method != "DELETE" {
		t.Fatalf("the MCP server's routes received %+v", got)
	}
	for _, p := range paths {
		if sec, err := vault.Root.Logical().ReadWithContext(ctx, p); err != nil || sec != nil {
			t.Fatalf("after DELETE, reading %s: want Vault's 404, got %v %v", p, sec, err)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := caddyproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
