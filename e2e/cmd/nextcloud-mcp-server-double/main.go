// Command nextcloud-mcp-server-double takes the Nextcloud MCP server's
// place in a container, for the deployment tests: it is started as the
// real image starts the real server (`nextcloud-mcp-server run --host H
// --port P`, NEXTCLOUD_HOST in the environment), and the tests build it
// into an image at the real one's path, /app/.venv/bin/nextcloud-mcp-server,
// so that the pod manifest runs it unchanged but for the image name.
//
// On one listener, as the MCP server: its own app-password routes
// (/api/v1/users/...) served by the faithful double of internal/fakemcp,
// checking passwords against NEXTCLOUD_HOST; /health/live and
// /health/ready; and a real MCP server (the official Go SDK, streamable
// HTTP) on /mcp with one tool, stored_password_sha256, through which a
// test that cannot reach this listener (it is bound to the pod's loopback)
// asks what the double stored, as a digest: no password leaves it.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-apppw/caddy-apppw/internal/fakemcp"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: nextcloud-mcp-server run [--host H] [--port P] [--transport T]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 8000, "port to listen on")
	fs.String("transport", "streamable-http", "MCP transport (only streamable-http here)")
	_ = fs.Parse(os.Args[2:])

	nextcloud := os.Getenv("NEXTCLOUD_HOST")
	if nextcloud == "" {
		log.Fatal("NEXTCLOUD_HOST is not set")
	}
	passwords := fakemcp.NewHandler(nextcloud)

	server := mcp.NewServer(&mcp.Implementation{Name: "nextcloud-mcp-server-double", Version: "v1"}, nil)
	type query struct {
		UserID string `json:"user_id" jsonschema:"the user whose stored app password to digest"`
	}
	type digest struct {
		Stored bool   `json:"stored"`
		SHA256 string `json:"sha256,omitempty"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "stored_password_sha256", Description: "SHA-256 of the app password the MCP server holds for a user."},
		func(_ context.Context, _ *mcp.CallToolRequest, q query) (*mcp.CallToolResult, digest, error) {
			rec, ok := passwords.Get(q.UserID)
			if !ok {
				return nil, digest{}, nil
			}
			sum := sha256.Sum256([]byte(rec.Password))
			return nil, digest{Stored: true, SHA256: hex.EncodeToString(sum[:])}, nil
		})

	mux := http.NewServeMux()
	mux.Handle("/api/v1/users/", passwords)
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	mux.HandleFunc("GET /health/live", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, `{"status":"alive"}`) })
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, `{"status":"ready"}`) })

	addr := net.JoinHostPort(*host, fmt.Sprint(*port))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	log.Printf("nextcloud-mcp-server-double listening on %s, checking passwords against %s", addr, nextcloud)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
