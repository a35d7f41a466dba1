package caddyapppw

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
)

// vaultBalancer is README.md's load balancer for a Vault cluster, as
// printed, with the cluster's nodes for its upstreams and the test's
// address: Caddy's own reverse_proxy sending to the active node only (its
// active health check asks /v1/sys/health, which answers 200 on the
// active node and 429 on a standby), holding a request that finds no
// healthy node up to lb_try_duration (an election).
func vaultBalancer(t *testing.T, c *devvault.Cluster, port int, tryDuration string) string {
	t.Helper()
	var text string
	for _, b := range readmeBlocks(t, "caddyfile") {
		if caddyfileKind(b.Text) == "balancer" {
			text = b.Text
		}
	}
	var upstreams []string
	for _, n := range c.Nodes {
		upstreams = append(upstreams, strings.TrimPrefix(n.Addr, "http://"))
	}
	for from, to := range map[string]string{
		"http://127.0.0.1:8200 {": fmt.Sprintf("http://127.0.0.1:%d {", port),
		"vault-1.internal:8200 vault-2.internal:8200 vault-3.internal:8200": strings.Join(upstreams, " "),
		"lb_try_duration 5s": "lb_try_duration " + tryDuration,
	} {
		if !strings.Contains(text, from) {
			t.Fatalf("README.md's balancer block no longer says %q", from)
		}
		text = strings.Replace(text, from, to, 1)
	}
	return "\n" + text + "\n"
}

// The active node of a three-node Raft cluster is killed (SIGKILL) under
// load. Every answer is a 200 whose record Vault holds, or a 503 with
// Retry-After; no request that failed for the election used up an
// attempt; and once a standby has taken over, service resumes without
// touching Caddy. With the README's settings the balancer and the
// client's retries hold requests through the election; with a budget
// too short for it (one try, 1s, a balancer that does not wait) requests
// fail, and must fail as a 503.
//
// Pointed at a standby without a balancer, the module sees what a standby
// answers while there is no active node to forward to (500 "local node not
// active but active cluster node not found", 503, a redirect to the dead
// node): those too end as a retry or a 503.
func TestVaultClusterActiveNodeKilled(t *testing.T) {
	t.Run("held", func(t *testing.T) { activeNodeKilled(t, "", "5s") })
	t.Run("short budget", func(t *testing.T) { activeNodeKilled(t, "\n timeout 1s\n max_retries -1", "0") })
	t.Run("standby without balancer", func(t *testing.T) { activeNodeKilled(t, "\n timeout 3s", "") })
}

// activeNodeKilled runs the test through the README's balancer waiting up
// to tryDuration, or, when tryDuration is "", straight to a standby.
func activeNodeKilled(t *testing.T, vaultOptions, tryDuration string) {
	needsVault(t)
	c := devvault.StartCluster(t, 3)
	e := newEnv(t, "")
	if tryDuration == "" {
		e.vaultAddr = c.Nodes[1].Addr // node1 is the first active node
	} else {
		lb := freePort(t)
		e.sites = vaultBalancer(t, c, lb, tryDuration)
		e.vaultAddr = fmt.Sprintf("http://127.0.0.1:%d", lb)
	}
	e.vaultAuth = "token " + c.Token + vaultOptions
	// A successful POST counts (docs/API.md); two attempts leave room
	// for it and the GET after it.
	settings := "rate_limit 2 1h"
	e.load(e.caddyfile(settings))
	e.nc.AcceptAnyUser(alicePW)
	// The wrong passwords at the end all come from Caddy's address.
	e.nc.DisableBruteForceProtection()

	var (
		mu       sync.Mutex
		stored   []string // users answered 200
		failed   []string // users answered 503
		answers  = map[int]int{}
		bad      []string
		next     int
		lastOK   = time.Now()
		longest  time.Duration
		afterNew int // 200s since the new active node was found
	)
	note := func(uid string, a answer, want200 string) {
		mu.Lock()
		defer mu.Unlock()
		answers[a.status]++
		switch {
		case a.status == 200 && a.body == want200:
			longest = max(longest, time.Since(lastOK))
			lastOK = time.Now()
			afterNew++
		case a.status == 503 && a.body == storageDown && a.header.Get("Retry-After") == unavailableRetryAfter:
		default:
			bad = append(bad, fmt.Sprintf("%s: %d %s (Retry-After %q)", uid, a.status, a.body, a.header.Get("Retry-After")))
		}
	}
	// round provisions a new user, then reads its status.
	round := func() {
		mu.Lock()
		next++
		uid := fmt.Sprintf("c%04d", next)
		mu.Unlock()
		a := e.call("POST", "/api/v1/users/"+uid+"/app-password", uid+":"+alicePW, "")
		note(uid, a, `{"success":true,"message":"App password stored for `+uid+`","scopes":null}`)
		mu.Lock()
		if a.status == 200 {
			stored = append(stored, uid)
		} else {
			failed = append(failed, uid)
		}
		mu.Unlock()
		if a.status == 200 {
			note(uid, e.call("GET", "/api/v1/users/"+uid+"/app-password", uid+":"+alicePW, ""),
				`{"success":true,"user_id":"`+uid+`","has_app_password":true}`)
		}
	}
	load := func(until func() bool) { fourWorkersUntil(&mu, until, round) }

	load(func() bool { return len(stored) >= 20 })
	old := c.Active()
	if old == nil {
		t.Fatal("no active node")
	}
	old.Kill()
	killedAt := time.Now()
	var active *devvault.Server
	var activeErr error
	var found sync.WaitGroup
	found.Go(func() { active, activeErr = c.WaitActive(time.Minute) })
	load(func() bool { return answers[503] > 0 || time.Since(killedAt) > 5*time.Second })
	found.Wait()
	if activeErr != nil {
		t.Fatal(activeErr)
	}
	mu.Lock()
	afterNew = 0
	mu.Unlock()
	load(func() bool { return afterNew >= 40 })

	if len(bad) > 0 {
		t.Fatalf("%d bad answers: %v", len(bad), bad[:min(len(bad), 5)])
	}
	// Every 200 is in Vault, with its password; a 503 left nothing or
	// the whole record.
	read := func(uid string) map[string]any {
		s, err := active.Root.Logical().Read("secret/data/" + e.secretPath(uid))
		if err != nil {
			t.Fatalf("reading %s: %v", uid, err)
		}
		if s == nil || s.Data["data"] == nil {
			return nil
		}
		return s.Data["data"].(map[string]any)
	}
	for _, uid := range stored {
		if got := read(uid); got["app_password"] != alicePW || got["user_id"] != uid {
			t.Fatalf("%s answered 200 but Vault holds %v", uid, got)
		}
	}
	for _, uid := range failed {
		if got := read(uid); got != nil && got["app_password"] != alicePW {
			t.Fatalf("%s answered 503 and Vault holds a partial record %v", uid, got)
		}
		// rate_limit 2: had the failed request used up an attempt, the
		// second wrong password would be a 429.
		for range 2 {
			e.call("POST", "/api/v1/users/"+uid+"/app-password", uid+":"+alicePW2, "").expect(t, 401,
				`{"success":false,"error":"Invalid app password"}`)
		}
	}
	t.Logf("active %s killed; %s took over; answers %v; longest gap without a 200: %s",
		old.Addr, active.Addr, answers, longest.Round(time.Millisecond))
	assertNoSecrets(t, e.logFile, alicePW)

	// The killed node comes back as a standby of the new active node.
	if err := old.Restart(); err != nil {
		t.Fatal(err)
	}
	if h, err := old.Root.Sys().Health(); err != nil || h.Sealed || !h.Standby {
		t.Fatalf("restarted node: %+v %v", h, err)
	}
	e.client.CloseIdleConnections()
}
