// Package caddyproc runs a Caddy binary as operators do — `caddy run` on a
// Caddyfile, with its environment — for the tests and the benchmark
// harness, and knows when it serves. WaitForLine and FreeAddr serve the
// other test servers (redis-server) too.
package caddyproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Process is a running Caddy.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs `bin run --config caddyfile --adapter caddyfile` with env
// added to this process's environment, and returns once Caddy logs that it
// serves its configuration. Caddy's storage goes to dataDir.
func Start(bin, caddyfile, dataDir string, env ...string) (*Process, error) {
	cmd := exec.Command(bin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	cmd.Env = append(append(os.Environ(), env...), "XDG_DATA_HOME="+dataDir, "XDG_CONFIG_HOME="+dataDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	if err := WaitForLine(stderr, "serving initial configuration", time.Minute); err != nil {
		p.Stop()
		return nil, fmt.Errorf("caddy: %w", err)
	}
	return p, nil
}

// Pid is Caddy's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop asks Caddy to stop (SIGTERM) and waits for it.
func (p *Process) Stop() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}

// Kill ends Caddy the hard way (SIGKILL), as a crash would, and waits
// for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitForLine reads r until a line contains want, then keeps draining r in
// the background so the writer never blocks on a full pipe.
func WaitForLine(r io.Reader, want string, timeout time.Duration) error {
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), want) {
				seen = true
				close(found)
			}
		}
	}()
	select {
	case <-found:
		return nil
	case <-time.After(timeout):
		return errors.New("no line with " + fmt.Sprintf("%q", want) + " within " + timeout.String())
	}
}

// FreeAddr is a loopback host:port nothing listens on right now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
