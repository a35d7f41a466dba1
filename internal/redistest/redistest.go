// Package redistest runs a real redis-server (Debian's package, which
// .ci/run installs) on a free loopback port for tests.
package redistest

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
)

// Server is a running redis-server.
type Server struct {
	Addr string // host:port
	cmd  *exec.Cmd
	done chan struct{}
	// bin, args and ready start it again: redis-server by default;
	// a replica or a sentinel (sentinel.go) has its own.
	bin   string
	args  []string
	ready string
}

// Start runs redis-server until the test ends; without the binary the test
// fails (.ci/run installs it). Under -short (the fast lane, which
// needs nothing but Go) the test is skipped instead.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server: the full suite (scripts/test) runs it, -short does not")
	}
	s, err := startServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// startServer runs redis-server on a free loopback port with more
// arguments, if any.
func startServer(more ...string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server not found: apt-get install redis-server (.ci/run does)")
	}
	addr, err := caddyproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	s := &Server{Addr: addr, bin: "redis-server", ready: "Ready to accept connections",
		args: append([]string{"--bind", "127.0.0.1", "--port", port,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice"}, more...)}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	s.cmd = exec.Command(s.bin, s.args...)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	done := s.done
	go func() { _ = s.cmd.Wait(); close(done) }()
	if err := caddyproc.WaitForLine(out, s.ready, 30*time.Second); err != nil {
		s.Kill()
		return fmt.Errorf("%s on %s: %w", s.bin, s.Addr, err)
	}
	return nil
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Kill ends the server the hard way.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts a killed server again on the same address (empty).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Revive(); err != nil {
		t.Fatal(err)
	}
}

// Revive starts a killed server again on the same address (empty), as
// Restart does, for callers that are not tests.
func (s *Server) Revive() error { return s.start() }

// Stop ends the server, unless it is dead already.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }
