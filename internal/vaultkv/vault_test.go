package vaultkv

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv/vaultkvtest"
)

// The store's tests share one dev Vault per package run; each test has a
// mount of its own.

const (
	alicePW  = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"
	alicePW2 = "FFFFF-GGGGG-HHHHH-IIIII-JJJJJ"
)

var (
	sharedVault     *devvault.Server
	sharedVaultOnce sync.Once
	sharedVaultErr  error
	mounts          atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedVault != nil {
		sharedVault.Stop()
	}
	os.Exit(code)
}

// vaultServer is the package's dev Vault. Under -short the test is
// skipped instead: the dev Vault is a 10–20 minute build on a fresh
// machine, and the full suite runs these tests.
func vaultServer(t *testing.T) *devvault.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the dev Vault")
	}
	sharedVaultOnce.Do(func() { sharedVault, sharedVaultErr = devvault.Run(devvault.Options{}) })
	if sharedVaultErr != nil {
		t.Fatal(sharedVaultErr)
	}
	return sharedVault
}

// mountKV mounts a KV engine of version kv for the test.
func mountKV(t *testing.T, v *devvault.Server, kv int) string {
	t.Helper()
	mount := fmt.Sprintf("kv%d-%s-%d", kv, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), mounts.Add(1))
	if err := v.Root.Sys().MountWithContext(t.Context(), mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": fmt.Sprint(kv)}}); err != nil {
		t.Fatal(err)
	}
	return mount
}

// newStore is a Store as the handler builds it, on a KV mount of version
// kv of the test's own, with the root token, reaching Vault at addr.
func newStore(t *testing.T, v *devvault.Server, addr string, kv int) *Store {
	t.Helper()
	cfg := &Config{Address: addr, Token: v.Token, Mount: mountKV(t, v, kv), PathPrefix: "test/app-passwords", KVVersion: kv}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// kv1Store is a Store on a KV v1 mount of the test's own, talking to
// Vault through proxy.
func kv1Store(t *testing.T, v *devvault.Server, proxy *vaultkvtest.Proxy) *Store {
	t.Helper()
	return newStore(t, v, proxy.URL, 1)
}
