package vaultkv

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv/vaultkvtest"
)

// Within a process the writes of one user are serialised: a DELETE that
// comes while a PATCH is between its re-read and its write waits for the
// write, so the DELETE is the last word. The proxy holds the PATCH's write
// until the DELETE either waits for the user's lock or reaches Vault.
func TestKVv1WritesOfOneUserAreSerialised(t *testing.T) {
	v := vaultServer(t)
	proxy := vaultkvtest.NewProxy(t, v.Addr)
	s := kv1Store(t, v, proxy)
	ctx := t.Context()
	if err := s.Save(ctx, &Record{UserID: "alice", AppPassword: alicePW, CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Load(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/" + s.mount + "/" + s.secretPath("alice")
	write := proxy.HoldNext("PUT", path, false)
	var wg sync.WaitGroup
	var saveErr, deleteErr error
	wg.Go(func() {
		upd := *rec
		upd.Scopes, upd.UpdatedAt = []string{"notes.read"}, 2
		saveErr = s.Save(ctx, &upd)
	})
	<-write.Held
	wg.Go(func() { deleteErr = s.Delete(ctx, "alice") })

	// Either the DELETE queues behind the PATCH's write (serialised), or
	// it reaches Vault while the write is held (not serialised).
	deadline := time.Now().Add(10 * time.Second)
	for s.locks.waiting(s.secretPath("alice")) < 2 && proxy.Count("DELETE", path) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the DELETE neither waited for the lock nor reached Vault")
		}
		time.Sleep(time.Millisecond)
	}
	write.Let()
	wg.Wait()
	if saveErr != nil || deleteErr != nil {
		t.Fatalf("save: %v, delete: %v", saveErr, deleteErr)
	}
	if got, err := s.Load(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		if got != nil {
			t.Fatalf("after PATCH then DELETE the store holds a record with scopes %v", got.Scopes)
		}
		t.Fatalf("load after PATCH then DELETE: %v", err)
	}
	if n := s.locks.size(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}

// A record loaded before a DELETE cannot be saved after it, and a new
// record cannot overwrite one that appeared since (the check-and-set KV v1
// lacks, done with a read under the user's lock).
func TestKVv1SaveChecksWhatItLoaded(t *testing.T) {
	v := vaultServer(t)
	s := kv1Store(t, v, vaultkvtest.NewProxy(t, v.Addr))
	ctx := t.Context()
	if err := s.Save(ctx, &Record{UserID: "alice", AppPassword: alicePW, CreatedAt: 1, UpdatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, &Record{UserID: "alice", AppPassword: alicePW2, CreatedAt: 2, UpdatedAt: 2}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a new record over an existing one: %v", err)
	}
	rec, err := s.Load(ctx, "alice")
	if err != nil || rec.CreatedAt != 1 {
		t.Fatalf("load: %+v %v", rec, err)
	}
	other := *rec
	other.UpdatedAt = 3
	if err := s.Save(ctx, &other); err != nil {
		t.Fatal(err)
	}
	stale := *rec
	stale.UpdatedAt = 4
	if err := s.Save(ctx, &stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("a write from a stale read: %v", err)
	}
	if err := s.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, &other); !errors.Is(err, ErrConflict) {
		t.Fatalf("a write after DELETE: %v", err)
	}
	if _, err := s.Load(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after DELETE: %v", err)
	}
}
