package devvault

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Cluster is a Vault cluster on integrated storage (Raft): each node a
// devvault process with its own raft directory, cluster listener and API
// address on loopback, joined to the first, with KV v2 at "secret/". It
// is what production runs, minus TLS between clients and nodes: a raft
// leader that is the active node, standbys that forward requests to it,
// and an election when it dies.
type Cluster struct {
	Nodes []*Server
	Token string // root token
	dir   string
}

// StartCluster runs an n-node cluster until the test ends (skipped under
// -short, as Start is).
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the dev Vault: the full suite (scripts/test) runs it, -short does not")
	}
	c, err := RunCluster(n, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// RunCluster starts an n-node cluster keeping its raft data under dir;
// the caller must Stop it. The first node initialises and becomes the
// active node; the others join it one after the other and come up as
// standbys.
func RunCluster(n int, dir string) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("devvault: a cluster needs a node")
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Token: randomToken(), dir: dir}
	keyFile := filepath.Join(dir, "unseal.key")
	for i := range n {
		nodeDir := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		if err := os.MkdirAll(nodeDir, 0o700); err != nil {
			c.Stop()
			return nil, err
		}
		clusterAddr, err := freeLoopbackAddr()
		if err != nil {
			c.Stop()
			return nil, err
		}
		args := []string{
			"-root-token", c.Token, "-kv-version", "2", "-exit-with-stdin", "-log-level", "error",
			"-raft-dir", nodeDir, "-node-id", fmt.Sprintf("node%d", i+1),
			"-cluster-addr", clusterAddr, "-unseal-key-file", keyFile,
		}
		if i > 0 {
			args = append(args, "-join", c.Nodes[0].Addr)
		}
		s := &Server{Token: c.Token, args: args}
		if err := s.start(bin, "127.0.0.1:0"); err != nil {
			c.Stop()
			return nil, fmt.Errorf("node%d: %w", i+1, err)
		}
		if s.Root, err = rootClient(s.Addr, c.Token); err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
		if i == 0 {
			// Autopilot adds a joining node as a non-voter and promotes it
			// once it has been healthy this long (Vault's default: 10s).
			// Until then the cluster could not survive its first node.
			if _, err := s.Root.Logical().Write("sys/storage/raft/autopilot/configuration", map[string]any{
				"server_stabilization_time": "1s",
			}); err != nil {
				c.Stop()
				return nil, fmt.Errorf("autopilot configuration: %w", err)
			}
		}
	}
	if err := c.waitVoters(n, 2*time.Minute); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// waitVoters waits until the raft configuration has n voters: only then
// can the cluster lose its active node and elect another.
func (c *Cluster) waitVoters(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		voters := 0
		if a := c.Active(); a != nil {
			if sec, err := a.Root.Logical().Read("sys/storage/raft/configuration"); err == nil && sec != nil {
				cfg, _ := sec.Data["config"].(map[string]any)
				servers, _ := cfg["servers"].([]any)
				for _, sv := range servers {
					if m, _ := sv.(map[string]any); m["voter"] == true {
						voters++
					}
				}
			}
		}
		if voters == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devvault: %d of %d raft voters after %s", voters, n, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func rootClient(addr, token string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = 5 * time.Second
	cl, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	cl.SetToken(token)
	return cl, nil
}

// freeLoopbackAddr is a loopback host:port free at the time of asking:
// the cluster address a node advertises must be known before the node
// starts, so it cannot be port 0.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Active returns the node that answers sys/health as the active node,
// or nil when none does (an election in progress).
func (c *Cluster) Active() *Server {
	for _, s := range c.Nodes {
		if s.running() && s.isActive() {
			return s
		}
	}
	return nil
}

// WaitActive waits up to timeout for a node to be active and returns it.
func (c *Cluster) WaitActive(timeout time.Duration) (*Server, error) {
	deadline := time.Now().Add(timeout)
	for {
		if s := c.Active(); s != nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("devvault: no active node after %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends every node.
func (c *Cluster) Stop() {
	for _, s := range c.Nodes {
		if s.running() {
			s.Stop()
		}
	}
}

func (s *Server) isActive() bool {
	h, err := s.Root.Sys().Health()
	return err == nil && h.Initialized && !h.Sealed && !h.Standby
}

// running reports whether the process has not exited.
func (s *Server) running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}
