package vaultkv

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Every operation is reported to the observer; a missing or changed
// record is an answer, not a failure, and a failure carries its kind.
func TestObserverSeesEveryOperation(t *testing.T) {
	v := vaultServer(t)
	var (
		mu  sync.Mutex
		got []string
	)
	observe := func(op string, took time.Duration, failure string) {
		mu.Lock()
		defer mu.Unlock()
		if took <= 0 {
			t.Errorf("%s took %v", op, took)
		}
		got = append(got, op+":"+failure)
	}
	open := func(token, mount string) *Store {
		cfg := &Config{Address: v.Addr, Token: token, Mount: mount, MaxRetries: -1}
		cfg.SetDefaults()
		s, err := New(cfg, Options{Observe: observe})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	mount := mountKV(t, v, 2)
	s := open(v.Token, mount)
	ctx := t.Context()
	if _, err := s.Load(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.Save(ctx, &Record{UserID: "alice", AppPassword: alicePW}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, &Record{UserID: "alice", AppPassword: alicePW2}); !errors.Is(err, ErrConflict) {
		t.Fatal(err)
	}
	if _, err := s.List(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// A token Vault's default policy alone covers may not read secrets.
	sec, err := v.Root.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(sec.Auth.ClientToken, mount).Load(ctx, "alice"); err == nil {
		t.Fatal("a token without a policy read a secret")
	}
	want := []string{"load:", "save:", "save:", "list:", "delete:", "load:permission denied"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
}
