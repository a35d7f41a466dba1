package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// attempts is the rate limit the replicas share: attempts per hour per
// account. Each load user's three provisionings count (a successful POST
// does), and a request whose end a failure cut off (Redis died before the
// attempt was given back, or the replica died) holds its attempt until
// its lease ends: 10 leaves the load users room, so that every 429 in the
// run is an attacker's.
const attempts = 10

// stack is everything the run kills and checks: the Vault cluster, Redis
// with Sentinel, the fake Nextcloud and the Caddy replicas.
type stack struct {
	vault    *devvault.Cluster
	redis    *redistest.Sentinel
	nc       *fakenextcloud.Server
	replicas []*replica
}

// replica is one Caddy process: its API site, its admin endpoint (for
// the goroutine count) and its own load balancer in front of the Vault
// nodes.
type replica struct {
	name, site, admin string
	proc              *caddyproc.Process
}

func (r *replica) alive() bool { return !r.proc.Exited() }

// replicaCaddyfile is one replica's configuration: the module with the
// shared limit on Redis through Sentinel, and a reverse_proxy in front
// of the Vault nodes that sends to the active one only (its health check
// asks /v1/sys/health: 200 on the active node, 429 on a standby) and
// holds a request up to lb_try_duration while there is none.
func replicaCaddyfile(r *replica, lb string, s *stack) string {
	var nodes []string
	for _, n := range s.vault.Nodes {
		nodes = append(nodes, strings.TrimPrefix(n.Addr, "http://"))
	}
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
}

http://%s {
	app_password {
		nextcloud %s
		vault http://%s {
			token {env.VAULT_TOKEN}
			timeout 10s
		}
		rate_limit %d 1h {
			redis {
				sentinel %s %s
			}
		}
		sweep off
	}
	respond 404
}

http://%s {
	reverse_proxy %s {
		lb_policy first
		lb_try_duration 5s
		lb_try_interval 100ms
		fail_duration 2s
		health_uri /v1/sys/health
		health_interval 250ms
		health_timeout 1s
	}
}
`, r.admin, r.site, s.nc.URL, lb, attempts, redistest.MasterName, strings.Join(s.redis.Addrs(), " "), lb, strings.Join(nodes, " "))
}

// startStack starts three Vault nodes, Redis with Sentinel, the fake
// Nextcloud and n Caddy replicas built from bin.
func startStack(bin, dir string, n int) *stack {
	s := &stack{}
	step("starting a three-node Vault cluster (integrated storage)")
	var err error
	s.vault, err = devvault.RunCluster(3, filepath.Join(dir, "vault"))
	must(err)
	atExit.Cleanup(s.vault.Stop)

	step("starting Redis: a primary, a replica, three sentinels")
	must(os.MkdirAll(filepath.Join(dir, "redis"), 0o700))
	s.redis, err = redistest.RunSentinel(filepath.Join(dir, "redis"))
	must(err)
	atExit.Cleanup(s.redis.Stop)

	s.nc = fakenextcloud.New(&atExit)
	s.nc.DisableBruteForceProtection() // the attackers' failures all come from Caddy's address
	s.nc.AcceptAnyUser(password)

	step(fmt.Sprintf("starting %d Caddy replicas", n))
	for i := range n {
		r := &replica{name: fmt.Sprintf("caddy%d", i+1), site: freeAddr(), admin: freeAddr()}
		rdir := filepath.Join(dir, r.name)
		must(os.MkdirAll(rdir, 0o700))
		file := filepath.Join(rdir, "Caddyfile")
		must(os.WriteFile(file, []byte(replicaCaddyfile(r, freeAddr(), s)), 0o600))
		r.proc, err = caddyproc.Start(bin, file, rdir, "VAULT_TOKEN="+s.vault.Token)
		must(err)
		atExit.Cleanup(r.proc.Stop)
		s.replicas = append(s.replicas, r)
	}
	return s
}

func freeAddr() string {
	a, err := caddyproc.FreeAddr()
	must(err)
	return a
}
