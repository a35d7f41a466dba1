package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
)

// MasterName is the name the sentinels of StartSentinel monitor.
const MasterName = "apppw"

// Sentinel is a Redis primary with one replica, watched by three
// sentinels (Debian's redis-sentinel) with a quorum of two: what Redis
// with Sentinel looks like in production, on loopback. The sentinels
// declare a primary down after DownAfter without an answer.
type Sentinel struct {
	Primary, Replica *Server
	Sentinels        []*Server
}

// DownAfter is the sentinels' down-after-milliseconds: short, so that a
// failover in a test takes seconds.
const DownAfter = time.Second

// StartSentinel runs the primary, the replica and the sentinels until
// the test ends; under -short the test is skipped.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server and redis-sentinel: the full suite (scripts/test) runs them, -short does not")
	}
	s, err := RunSentinel(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// RunSentinel starts the set, its files (the sentinels' configs, the
// replication's RDB) under dir; the caller must Stop it. It returns once the replica is in sync and every
// sentinel knows the replica and the other two sentinels, so a failover
// can start at once.
func RunSentinel(dir string) (*Sentinel, error) {
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		return nil, errors.New("redis-sentinel not found: apt-get install redis-sentinel (scripts/test does)")
	}
	s := &Sentinel{}
	var err error
	// Replication writes an RDB file, even with saving off: into a
	// directory of each server's own, never the working directory.
	primaryDir, replicaDir := filepath.Join(dir, "primary"), filepath.Join(dir, "replica")
	for _, d := range []string{primaryDir, replicaDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if s.Primary, err = startServer("--dir", primaryDir); err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(s.Primary.Addr)
	if s.Replica, err = startReplica(replicaDir, host, port); err != nil {
		s.Stop()
		return nil, err
	}
	for i := range 3 {
		sn, err := startSentinelProcess(filepath.Join(dir, fmt.Sprintf("sentinel%d.conf", i+1)), host, port)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.Sentinels = append(s.Sentinels, sn)
	}
	if err := s.waitAcquainted(30 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func startReplica(dir, host, port string) (*Server, error) {
	r, err := startServer("--dir", dir, "--replicaof", host, port)
	if err != nil {
		return nil, err
	}
	// The replica is up before it has synced: wait for the sync too.
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.Kill()
			return nil, fmt.Errorf("replica %s never synced with %s:%s", r.Addr, host, port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startSentinelProcess(conf, host, port string) (*Server, error) {
	addr, err := caddyproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, sport, _ := net.SplitHostPort(addr)
	// A sentinel rewrites its config file as it learns: it must be its own.
	text := fmt.Sprintf(`port %s
bind 127.0.0.1
daemonize no
sentinel monitor %s %s %s 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, sport, MasterName, host, port, MasterName, DownAfter.Milliseconds(), MasterName, MasterName)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	sn := &Server{Addr: addr, bin: "redis-sentinel", args: []string{conf}, ready: "+monitor master " + MasterName}
	if err := sn.start(); err != nil {
		return nil, err
	}
	return sn, nil
}

// waitAcquainted waits until every sentinel knows the replica and the
// two other sentinels.
func (s *Sentinel) waitAcquainted(timeout time.Duration) error {
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
		for {
			reps, err1 := c.Replicas(ctx, MasterName).Result()
			peers, err2 := c.Sentinels(ctx, MasterName).Result()
			if err1 == nil && err2 == nil && len(reps) >= 1 && len(peers) >= len(s.Sentinels)-1 {
				break
			}
			if time.Now().After(deadline) {
				_ = c.Close()
				return fmt.Errorf("sentinel %s: knows %d replicas and %d sentinels after %s", sn.Addr, len(reps), len(peers), timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = c.Close()
	}
	return nil
}

// Addrs are the sentinels' host:port.
func (s *Sentinel) Addrs() []string {
	var a []string
	for _, sn := range s.Sentinels {
		a = append(a, sn.Addr)
	}
	return a
}

// PrimaryAddr is the primary's address as a running sentinel reports it.
func (s *Sentinel) PrimaryAddr() (string, error) {
	var last error
	for _, sn := range s.Sentinels {
		if !sn.running() {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
		a, err := c.GetMasterAddrByName(context.Background(), MasterName).Result()
		_ = c.Close()
		if err == nil && len(a) == 2 {
			return net.JoinHostPort(a[0], a[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel names the primary: %v", last)
}

// WaitFailover waits until the sentinels name a primary other than old
// and that server answers as a primary; it returns its address.
func (s *Sentinel) WaitFailover(old string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if a, err := s.PrimaryAddr(); err == nil && a != old && isPrimary(a) {
			return a, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no failover away from %s within %s", old, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func isPrimary(addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	return err == nil && strings.Contains(info, "role:master")
}

// WaitReplica waits until the server at addr is a replica in sync with
// its primary: a restarted old primary, which the sentinels turn into a
// replica of the new one.
func (s *Sentinel) WaitReplica(addr string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is no replica in sync after %s", addr, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Server returns the process serving addr (the primary or the replica),
// or nil.
func (s *Sentinel) Server(addr string) *Server {
	for _, r := range []*Server{s.Primary, s.Replica} {
		if r != nil && r.Addr == addr {
			return r
		}
	}
	return nil
}

// Stop ends every process of the set.
func (s *Sentinel) Stop() {
	for _, sn := range s.Sentinels {
		sn.Stop()
	}
	for _, r := range []*Server{s.Replica, s.Primary} {
		if r != nil {
			r.Stop()
		}
	}
}

// running reports whether the process has not exited.
func (s *Server) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}
