package vaultkv

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
)

// The store's benchmarks measure what a provisioning costs Caddy on the
// Vault side: building the write, sending it, reading the answer. Vault
// runs in its own process, so allocs/op are the client's alone.

// benchVault is vaultServer for a benchmark.
func benchVault(b *testing.B) *devvault.Server {
	b.Helper()
	if testing.Short() {
		b.Skip("needs the dev Vault")
	}
	sharedVaultOnce.Do(func() { sharedVault, sharedVaultErr = devvault.Run(devvault.Options{}) })
	if sharedVaultErr != nil {
		b.Fatal(sharedVaultErr)
	}
	return sharedVault
}

// benchStore is a Store on a KV v2 mount of its own, with the module's
// default path prefix (the depth of the module's writes).
func benchStore(b *testing.B, kv int) *Store {
	b.Helper()
	v := benchVault(b)
	mount := fmt.Sprintf("bench-kv%d-%d", kv, mounts.Add(1))
	if err := v.Root.Sys().MountWithContext(context.Background(), mount, &api.MountInput{Type: "kv", Options: map[string]string{"version": fmt.Sprint(kv)}}); err != nil {
		b.Fatal(err)
	}
	cfg := &Config{Address: v.Addr, Token: v.Token, Mount: mount, KVVersion: kv}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func benchRecord(uid string) *Record {
	login := uid + "@example.com"
	return &Record{
		UserID: uid, AppPassword: alicePW, Username: &login,
		Scopes:    []string{"notes.read", "notes.write"},
		CreatedAt: 1_800_000_000, UpdatedAt: 1_800_000_000,
	}
}

// BenchmarkSaveNew is the write of a first provisioning: a new user's
// record with cas=0, one round trip.
func BenchmarkSaveNew(b *testing.B) {
	s := benchStore(b, 2)
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%08d", i)
	}
	recs := make([]Record, len(ids))
	for i, id := range ids {
		recs[i] = *benchRecord(id)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(recs) {
			b.Fatal("out of user ids")
		}
		if err := s.Save(ctx, &recs[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkSaveOver is a re-provisioning: a write over the loaded
// version, then the destroy of the older ones (two round trips).
func BenchmarkSaveOver(b *testing.B) {
	s := benchStore(b, 2)
	ctx := context.Background()
	rec := benchRecord("alice")
	if err := s.Save(ctx, rec); err != nil {
		b.Fatal(err)
	}
	loaded, err := s.Load(ctx, "alice")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Save(ctx, loaded); err != nil {
			b.Fatal(err)
		}
		loaded.Version++
	}
}

// BenchmarkLoad is the read of a stored record.
func BenchmarkLoad(b *testing.B) {
	s := benchStore(b, 2)
	ctx := context.Background()
	if err := s.Save(ctx, benchRecord("alice")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Load(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeRecord is the record's turn into what the client sends.
func BenchmarkEncodeRecord(b *testing.B) {
	rec := benchRecord("alice")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeRecord(rec, 2, 0); err != nil {
			b.Fatal(err)
		}
	}
}
