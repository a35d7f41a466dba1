// Package devvault starts the project's dev Vault (tools/devvault: Vault's
// real core with in-memory storage) for tests, on a free loopback port, or
// a cluster of them on integrated storage (cluster.go).
package devvault

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Server is a running dev Vault.
type Server struct {
	Addr  string      // e.g. http://127.0.0.1:38211
	Token string      // root token
	Root  *api.Client // a client with the root token

	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	args  []string // to start it again
}

// Options change how the server starts.
type Options struct {
	KVVersion string   // "2" (default), "1", or "none"
	Args      []string // more devvault flags
	// DataDir keeps storage and the unseal key on disk, so Restart brings
	// the same data back (the default is memory).
	DataDir string
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// ErrShort is what Binary, Run and Restart return in a test binary run
// with -short: the fast lane neither builds nor starts the dev Vault (the
// first build takes 10–20 minutes). A test that needs Vault skips under
// testing.Short(); Start does that for its callers.
var ErrShort = errors.New("devvault: no dev Vault under go test -short: skip the test when testing.Short() (devvault.Start does)")

// shortTest reports whether this is a test binary run with -short.
func shortTest() bool { return testing.Testing() && testing.Short() }

// Binary returns the path of the devvault binary: $DEVVAULT_BIN, or what
// scripts/devvault-bin prints (building it when needed). In a test run
// with -short it returns ErrShort and builds nothing.
func Binary() (string, error) {
	if shortTest() {
		return "", ErrShort
	}
	binOnce.Do(func() {
		if p := os.Getenv("DEVVAULT_BIN"); p != "" {
			binPath = p
			return
		}
		root, err := repoRoot()
		if err != nil {
			binErr = err
			return
		}
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "devvault-bin"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			binErr = fmt.Errorf("scripts/devvault-bin: %w", err)
			return
		}
		binPath = strings.TrimSpace(string(out))
	})
	return binPath, binErr
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "devvault", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("devvault: cannot find the repository root (tools/devvault)")
		}
		dir = parent
	}
}

// Start runs a dev Vault until the test ends. Under -short it skips the
// test: the full suite (scripts/test) runs it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the dev Vault: the full suite (scripts/test) runs it, -short does not")
	}
	s, err := Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Run starts a dev Vault; the caller must Stop it.
func Run(opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	token := randomToken()
	kv := opts.KVVersion
	switch kv {
	case "":
		kv = "2"
	case "none":
		kv = ""
	}
	args := append([]string{"-root-token", token, "-kv-version", kv, "-exit-with-stdin"}, opts.Args...)
	if opts.DataDir != "" {
		args = append(args, "-data-dir", opts.DataDir)
	}
	s := &Server{Token: token, args: args}
	if err := s.start(bin, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	if s.Root, err = api.NewClient(cfg); err != nil {
		s.Stop()
		return nil, err
	}
	s.Root.SetToken(token)
	return s, nil
}

// Restart kills the server the hard way (SIGKILL, as a crash would) and
// starts it again on the same address. Without DataDir its data is gone.
func (s *Server) Restart() error {
	_ = s.cmd.Process.Kill()
	<-s.done
	bin, err := Binary()
	if err != nil {
		return err
	}
	u, err := url.Parse(s.Addr)
	if err != nil {
		return err
	}
	return s.start(bin, u.Host)
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Kill stops the server the hard way, as a crash would.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

func (s *Server) start(bin, addr string) error {
	cmd := exec.Command(bin, append([]string{"-addr", addr}, s.args...)...)
	cmd.Stderr = os.Stderr
	// The server stops when this pipe closes, which the kernel does when
	// this process dies, however it dies. Server keeps the write end
	// referenced so the garbage collector does not close it.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.stdin, s.done = cmd, stdin, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-lines:
		if !ok || !strings.HasPrefix(line, "VAULT_ADDR=") {
			s.Stop()
			return fmt.Errorf("devvault did not start (first line %q)", line)
		}
		s.Addr = strings.TrimPrefix(line, "VAULT_ADDR=")
	case <-time.After(2 * time.Minute):
		s.Stop()
		return errors.New("devvault did not print its address within 2 minutes")
	}
	return nil
}

// Stop ends the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func randomToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "root-" + hex.EncodeToString(b)
}
