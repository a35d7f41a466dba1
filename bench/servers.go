package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
)

// startBackend runs the stand-in for the MCP server: a 1 KiB answer, and
// an SSE stream of sseEvents events paced by p (sse.go).
func startBackend(p *pacer) (string, func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("/kib", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(kibBody)
	})
	mux.HandleFunc("/sse", p.serve)
	// The stand-in MCP server's own copy of the POST route, for the
	// rejection scenarios' pass-through side (probes.go).
	mux.HandleFunc("POST /api/v1/users/{uid}/app-password", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rejectionFor(w, r.PathValue("uid"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }
}

// startCaddy writes the Caddyfile and runs bin on it until it serves.
func startCaddy(bin, dir, caddyfile string, env []string) *caddyproc.Process {
	file := filepath.Join(dir, "Caddyfile")
	must(os.WriteFile(file, []byte(caddyfile), 0o600))
	p, err := caddyproc.Start(bin, file, dir, env...)
	must(err)
	return p
}

// rss is the resident memory of a process, from /proc.
func rss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func freeAddr() string {
	addr, err := caddyproc.FreeAddr()
	must(err)
	return addr
}

func must(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	atExit.Run()
	os.Exit(1)
}
