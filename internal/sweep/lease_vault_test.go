package sweep_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/sweep"
)

const testPrefix = "nextcloud-mcp/app-passwords"

// policyClient is a client whose token carries only the module's policy
// (vault/<file>, its mount renamed to mount): the lease must work with
// exactly what the README tells operators to grant.
func policyClient(t *testing.T, v *devvault.Server, file, mount string) *api.Client {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "..", "vault", file))
	if err != nil {
		t.Fatal(err)
	}
	policy := strings.ReplaceAll(string(text), `"secret/`, `"`+mount+`/`)
	name := "sweep-" + mount
	if err := v.Root.Sys().PutPolicy(name, policy); err != nil {
		t.Fatal(err)
	}
	sec, err := v.Root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{name}, NoDefaultPolicy: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(sec.Auth.ClientToken)
	return c
}

func TestVaultLease(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the dev Vault")
	}
	v := devvault.Start(t, devvault.Options{})
	ctx := context.Background()
	if err := v.Root.Sys().Mount("kv1", &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	v2 := policyClient(t, v, "policy.hcl", "secret")
	v1 := policyClient(t, v, "policy-kv1.hcl", "kv1")
	leaseAt := func(c *api.Client, mount string, kv int, sub string) *sweep.VaultLease {
		return &sweep.VaultLease{Client: c, Mount: mount, KVVersion: kv, Path: sweep.VaultLeasePath(testPrefix + "/" + sub)}
	}

	t.Run("kv2 contract", func(t *testing.T) { leaseContract(t, leaseAt(v2, "secret", 2, "contract")) })
	t.Run("kv2 race", func(t *testing.T) { leaseRace(t, leaseAt(v2, "secret", 2, "race"), 8) })
	t.Run("kv1 contract", func(t *testing.T) { leaseContract(t, leaseAt(v1, "kv1", 1, "contract")) })

	t.Run("kv2 record beside the users", func(t *testing.T) {
		lease := &sweep.VaultLease{Client: v2, Mount: "secret", KVVersion: 2, Path: sweep.VaultLeasePath(testPrefix)}
		if lease.Path != testPrefix+"/_sweep/lease" {
			t.Errorf("lease path %q", lease.Path)
		}
		if _, err := v.Root.KVv2("secret").Put(ctx, testPrefix+"/alice", map[string]any{"user_id": "alice"}); err != nil {
			t.Fatal(err)
		}
		if ok, err := lease.Acquire(ctx, "a", t0, time.Hour); !ok || err != nil {
			t.Fatal(ok, err)
		}
		sec, err := v.Root.KVv2("secret").Get(ctx, lease.Path)
		if err != nil {
			t.Fatal(err)
		}
		if sec.Data["holder"] != "a" || sec.Data["expires_at"] != "2026-03-01T13:00:00Z" {
			t.Errorf("lease record %v", sec.Data)
		}
		// A reader listing the prefix sees a folder, never a user id.
		list, err := v.Root.Logical().List("secret/metadata/" + testPrefix)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, k := range list.Data["keys"].([]any) {
			keys = append(keys, k.(string))
		}
		if !slices.Contains(keys, "_sweep/") || !slices.Contains(keys, "alice") || slices.Contains(keys, "_sweep") {
			t.Errorf("LIST %s shows %v, want alice and the folder _sweep/", testPrefix, keys)
		}
	})

	// Between this replica's read and its write, another one takes the
	// lease: the check-and-set write fails and the lease stays theirs.
	t.Run("kv2 check-and-set conflict", func(t *testing.T) {
		p := sweep.VaultLeasePath(testPrefix + "/cas")
		calls := 0
		lease := &sweep.VaultLease{Client: v2, Mount: "secret", KVVersion: 2, Path: p,
			Do: func(ctx context.Context, op func() error) error {
				calls++
				if calls == 2 { // the write, after the read found the lease free
					rival := map[string]any{"holder": "rival", "expires_at": t0.Add(time.Hour).Format(time.RFC3339Nano)}
					if _, err := v.Root.KVv2("secret").Put(ctx, p, rival); err != nil {
						return err
					}
				}
				return op()
			}}
		if ok, err := lease.Acquire(ctx, "a", t0, time.Hour); ok || err != nil {
			t.Errorf("acquire after a rival's write: %v, %v; want false, nil", ok, err)
		}
		sec, err := v.Root.KVv2("secret").Get(ctx, p)
		if err != nil || sec.Data["holder"] != "rival" {
			t.Errorf("lease holder %v (err %v), want rival", sec.Data["holder"], err)
		}
		// Release by a non-holder leaves the rival's lease.
		if err := lease.Release(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if sec, _ := v.Root.KVv2("secret").Get(ctx, p); sec.Data["holder"] != "rival" {
			t.Errorf("release by a took the rival's lease: %v", sec.Data)
		}
	})

	t.Run("vault down", func(t *testing.T) {
		cfg := api.DefaultConfig()
		cfg.Address, cfg.MaxRetries = "http://127.0.0.1:1", 0
		down, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		lease := &sweep.VaultLease{Client: down, Mount: "secret", KVVersion: 2, Path: "x/_sweep/lease"}
		if ok, err := lease.Acquire(ctx, "a", t0, time.Hour); ok || err == nil {
			t.Errorf("acquire with Vault down: %v, %v; want an error", ok, err)
		}
	})
}

// Two sweepers on one Vault (KV v2), on a fake clock: one round per
// interval.
func TestTwoSweepersOneVault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the dev Vault")
	}
	v := devvault.Start(t, devvault.Options{})
	runTwoSweepers(t, &sweep.VaultLease{
		Client: policyClient(t, v, "policy.hcl", "secret"), Mount: "secret", KVVersion: 2,
		Path: sweep.VaultLeasePath(testPrefix),
	})
}
