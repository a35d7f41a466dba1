package caddyapppw

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
)

// ownVault gives the test a dev Vault of its own (it is going to hurt it)
// with its data on disk, so a restart brings the data back.
func ownVault(t *testing.T, e *env) string {
	t.Helper()
	dir := t.TempDir()
	v := devvault.Start(t, devvault.Options{DataDir: dir})
	e.vault, e.vaultAddr, e.vaultAuth = v, v.Addr, "token "+v.Token
	return dir
}

const storageDown = `{"success":false,"error":"Secret storage unavailable"}`

// verifyNoLeaks checks, after every other cleanup of the test, that no
// goroutine the test started is left: renewal loops, Vault and Nextcloud
// client connections, handler state. Caddy's file logger keeps one
// goroutine per log file, caddy.Stop leaves the admin endpoint serving,
// and the first config of the process refreshes a storage lock file:
// those are Caddy's. The test's own root client to the shared Vault keeps
// its connections for the next test: they are closed first.
func verifyNoLeaks(t *testing.T) {
	shared := vaultServer(t) // the shared Vault lives for the package run
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		shared.Root.CloneConfig().HttpClient.CloseIdleConnections()
		goleak.VerifyNone(t, current,
			goleak.IgnoreTopFunction("github.com/DeRuina/timberjack.(*Logger).millRun"),
			goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
			goleak.IgnoreAnyFunction("github.com/caddyserver/caddy/v2.replaceLocalAdminServer.func2"))
	})
}

func TestVaultKilledMidLoadThenRestarted(t *testing.T) {
	needsVault(t)
	verifyNoLeaks(t)
	e := newEnv(t, "")
	ownVault(t, e)
	e.vaultAuth += "\n timeout 2s"
	e.load(e.caddyfile(""))
	e.nc.AcceptAnyUser(alicePW)

	var (
		mu      sync.Mutex
		stored  []string // users answered 200
		answers = map[int]int{}
		bad     []string
		next    int
	)
	// post provisions one new user and records the answer.
	post := func() (status int) {
		mu.Lock()
		next++
		uid := fmt.Sprintf("k%04d", next)
		mu.Unlock()
		start := time.Now()
		a := e.call("POST", "/api/v1/users/"+uid+"/app-password", uid+":"+alicePW, "")
		mu.Lock()
		defer mu.Unlock()
		answers[a.status]++
		switch {
		case a.status == 200 && a.body == `{"success":true,"message":"App password stored for `+uid+`","scopes":null}`:
			stored = append(stored, uid)
		case a.status == 503 && a.body == storageDown:
		default:
			bad = append(bad, fmt.Sprint(a.status, " ", a.body))
		}
		if d := time.Since(start); d > 2*time.Second+3*time.Second {
			// A liveness bound (timeout + margin), not a speed target.
			bad = append(bad, fmt.Sprintf("%s answered after %s", uid, d))
		}
		return a.status
	}
	load := func(until func() bool) { fourWorkersUntil(&mu, until, func() { post() }) }

	load(func() bool { return len(stored) >= 40 })
	e.vault.Kill()
	load(func() bool { return answers[503] >= 20 })
	if err := e.vault.Restart(); err != nil {
		t.Fatal(err)
	}
	before := len(stored)
	// Service resumes without touching Caddy.
	load(func() bool { return len(stored) >= before+40 })

	if len(bad) > 0 {
		t.Fatalf("%d bad answers: %v", len(bad), bad[:min(len(bad), 5)])
	}
	// Every 200 is in Vault, with its password.
	for _, uid := range stored {
		if got := e.stored(uid); got["app_password"] != alicePW || got["user_id"] != uid {
			t.Fatalf("%s answered 200 but Vault holds %v", uid, got)
		}
	}
	t.Logf("answers: %v", answers)
	assertNoSecrets(t, e.logFile, alicePW)
	e.client.CloseIdleConnections()
}

// slowProxy forwards TCP to target, holding every chunk for delay.
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				pipe := func(dst, src net.Conn) {
					buf := make([]byte, 32<<10)
					for {
						n, err := src.Read(buf)
						if n > 0 {
							select {
							case <-time.After(delay):
							case <-done:
								return
							}
							if _, werr := dst.Write(buf[:n]); werr != nil {
								return
							}
						}
						if err != nil {
							return
						}
					}
				}
				go func() { pipe(u, c); u.Close(); c.Close() }()
				pipe(c, u)
			})
		}
	})
	return "http://" + ln.Addr().String()
}

func TestVaultSlowerThanTheTimeout(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	e.vaultAddr = slowProxy(t, strings.TrimPrefix(e.vault.Addr, "http://"), 3*time.Second)
	e.vaultAuth += "\n timeout 500ms"
	e.load(e.caddyfile(""))
	start := time.Now()
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 503, storageDown)
	// A liveness bound (the 500 ms budget, retries included, plus a
	// margin), not a speed target: without the budget this takes 9 s.
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("answered after %s", d)
	}
	if !e.causeLogged("timeout: ") {
		t.Fatal("no log line says timeout")
	}
}

func TestVaultSealedThenUnsealed(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	dir := ownVault(t, e)
	e.load(e.caddyfile(""))
	e.nc.AddUser("alice", "", alicePW)
	access := func() answer { return e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "") }
	access().expect(t, 200, `{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`)

	if err := e.vault.Root.Sys().SealWithContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	access().expect(t, 503, storageDown)
	if !e.causeLogged("sealed: ") {
		t.Fatal("no log line says sealed")
	}

	key, err := os.ReadFile(filepath.Join(dir, "unseal.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.vault.Root.Sys().UnsealWithContext(t.Context(), hex.EncodeToString(key)); err != nil {
		t.Fatal(err)
	}
	access().expect(t, 200, `{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`)
}

func TestVaultTokenRevoked(t *testing.T) {
	needsVault(t)
	e := newEnv(t, "")
	token := tokenWithPolicy(t, e, policyFor(t, e, "policy.hcl"), nil)
	e.vaultAuth = "token " + token
	e.load(e.caddyfile(""))
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	rootWrite(t, e.vault, "auth/token/revoke", map[string]any{"token": token})
	e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 503, storageDown)
	lines := e.logLines()
	if c, _ := lines[len(lines)-1]["cause"].(string); !strings.HasPrefix(c, "permission denied: ") {
		t.Fatalf("last cause %q", c)
	}
	if data, _ := os.ReadFile(e.logFile); strings.Contains(string(data), token) {
		t.Fatal("the log shows the Vault token")
	}
}
