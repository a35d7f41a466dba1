package main

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// TestReplicasShareOneLimit runs two Caddy processes, as two replicas
// behind a load balancer, on one Redis: a user's attempts spread over both
// are limited to the configured total, and concurrent attempts at the
// boundary never get past it.
func TestReplicasShareOneLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy and needs the dev Vault: the full suite (scripts/test) runs it, -short does not")
	}
	bin := buildCaddy(t)
	redis := redistest.Start(t)
	vault := devvault.Start(t, devvault.Options{})
	nc := fakenextcloud.New(t)
	// 55 failed logins from this one address: Nextcloud's brute-force
	// protection would refuse it from the 12th on. Exempt it, as its
	// allow list does.
	nc.BypassBruteForce("127.0.0.1")

	var sites []string
	for i := range 2 {
		site := freeAddr(t)
		sites = append(sites, "http://"+site)
		file := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(file, []byte(fmt.Sprintf(`{
	admin off
	persist_config off
}
http://%s {
	app_password {
		nextcloud %s
		vault %s {
			token {env.VAULT_TOKEN}
		}
		rate_limit 5 1h {
			redis {env.REDIS_URL}
		}
	}
	respond "replica %d"
}
`, site, nc.URL, vault.Addr, i)), 0o600); err != nil {
			t.Fatal(err)
		}
		startCaddy(t, bin, file, "VAULT_TOKEN="+vault.Token, "REDIS_URL="+redis.URL())
	}

	attempt := func(site, user string) int {
		req, _ := http.NewRequest("POST", site+"/api/v1/users/"+user+"/app-password", nil)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":Wrong-Wrong-Wrong-Wrong-Wrong")))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Alternating replicas: five failures in all, then 429 on both.
	for i := range 5 {
		if s := attempt(sites[i%2], "alice"); s != 401 {
			t.Fatalf("attempt %d: %d", i+1, s)
		}
	}
	for _, site := range sites {
		if s := attempt(site, "alice"); s != 429 {
			t.Fatalf("sixth attempt on %s: %d, want 429", site, s)
		}
	}

	// Twelve concurrent attempts, six on each replica, for a fresh user:
	// exactly five get through, every round.
	for round := range 10 {
		user := fmt.Sprint("race", round)
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				s := attempt(sites[i%2], user)
				mu.Lock()
				statuses[s]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if statuses[401] != 5 || statuses[429] != 7 {
			t.Fatalf("round %d: %v, want 5×401 and 7×429", round, statuses)
		}
	}
}
