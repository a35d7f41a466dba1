package main

import (
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

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

// TestCaddyfileExampleAsOperatorsRunIt builds this command, runs it on
// Caddyfile.example with its environment variables, and does what
// Astrolabe does: the secret must land at the documented Vault path and,
// with Caddyfile.example's deliver_to_mcp, in the MCP server's own table
// too; everything else must reach the MCP upstream.
func TestCaddyfileExampleAsOperatorsRunIt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy and needs the dev Vault: the full suite (scripts/test) runs it, -short does not")
	}
	bin := buildCaddy(t)
	vault := devvault.Start(t, devvault.Options{})
	nc := fakenextcloud.New(t)
	nc.AddUser("alice", "alice@example.com", "Abcde-Fghij-Klmno-Pqrst-Uvwxy")
	// The MCP upstream: its app-password routes are the MCP server's
	// double, the rest says what it saw.
	passwords := fakemcp.NewHandler(nc.URL)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/users/", passwords)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "mcp saw %s %s", r.Method, r.URL.Path)
	})
	mcp := &http.Server{Handler: mux}
	mcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = mcp.Serve(mcpLn) }()
	t.Cleanup(func() { _ = mcp.Close() })

	site := freeAddr(t)
	env := []string{
		"SITE_ADDRESS=http://" + site,
		"CADDY_ADMIN=" + freeAddr(t),
		"NEXTCLOUD_URL=" + nc.URL,
		"VAULT_ADDR=" + vault.Addr,
		"VAULT_TOKEN=" + vault.Token,
		"MCP_UPSTREAM=" + mcpLn.Addr().String(),
	}
	startCaddy(t, bin, "../../Caddyfile.example", env...)

	req, _ := http.NewRequest("POST", "http://"+site+"/api/v1/users/alice/app-password", strings.NewReader(`{"username": "alice@example.com"}`))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:Abcde-Fghij-Klmno-Pqrst-Uvwxy")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"success":true,`) {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	sec, err := vault.Root.KVv2("secret").Get(t.Context(), "nextcloud-mcp/app-passwords/alice")
	if err != nil {
		t.Fatal(err)
	}
	if sec.Data["app_password"] != "Abcde-Fghij-Klmno-Pqrst-Uvwxy" || sec.Data["username"] != "alice@example.com" {
		t.Fatalf("Vault holds %v", sec.Data)
	}
	if row, ok := passwords.Get("alice"); !ok || row.Password != "Abcde-Fghij-Klmno-Pqrst-Uvwxy" || row.Username != "alice@example.com" {
		t.Fatalf("the MCP server's table holds %+v (%v)", row, ok)
	}

	resp, err = http.Get("http://" + site + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "mcp saw GET /mcp" {
		t.Fatalf("pass-through: %d %s", resp.StatusCode, body)
	}

	// The operator's check of the same config and environment.
	check := exec.Command(bin, "app-password", "check", "--config", "../../Caddyfile.example", "--adapter", "caddyfile")
	check.Env = append(os.Environ(), env...)
	out, err := check.Output()
	if err != nil {
		t.Fatalf("app-password check: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "\nok   "); n != 4 {
		t.Fatalf("app-password check printed %d ok lines:\n%s", n, out)
	}
	check = exec.Command(bin, "app-password", "check", "--config", "../../Caddyfile.example", "--adapter", "caddyfile")
	check.Env = append(append(os.Environ(), env...), "VAULT_ADDR=http://127.0.0.1:1")
	out, err = check.Output()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 || !strings.Contains(string(out), "FAIL vault reachable") {
		t.Fatalf("check against a dead Vault: %v\n%s", err, out)
	}
}

// buildCaddy builds this command into the test's temporary directory.
func buildCaddy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// startCaddy runs the binary on a Caddyfile until the test ends.
func startCaddy(t *testing.T, bin, caddyfile string, env ...string) {
	t.Helper()
	p, err := caddyproc.Start(bin, caddyfile, t.TempDir(), env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := caddyproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
