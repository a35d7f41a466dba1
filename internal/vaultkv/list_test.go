package vaultkv

import (
	"reflect"
	"slices"
	"testing"
)

// List names the users that have a secret, on KV v1 and v2, and leaves
// out what is not a user: a folder below the prefix (the sweep keeps its
// lease in one), or nothing at all when nothing is stored.
func TestList(t *testing.T) {
	v := vaultServer(t)
	for _, kv := range []int{1, 2} {
		s := newStore(t, v, v.Addr, kv)
		ctx := t.Context()
		if ids, err := s.List(ctx); err != nil || ids != nil {
			t.Fatalf("KV v%d, nothing stored: %v %v", kv, ids, err)
		}
		for _, uid := range []string{"bob", "alice"} {
			if err := s.Save(ctx, &Record{UserID: uid, AppPassword: alicePW}); err != nil {
				t.Fatal(err)
			}
		}
		folder := s.secretPath("lease") + "/sweep"
		var err error
		if kv == 1 {
			err = v.Root.KVv1(s.mount).Put(ctx, folder, map[string]any{"x": 1})
		} else {
			_, err = v.Root.KVv2(s.mount).Put(ctx, folder, map[string]any{"x": 1})
		}
		if err != nil {
			t.Fatal(err)
		}
		ids, err := s.List(ctx)
		slices.Sort(ids)
		if err != nil || !reflect.DeepEqual(ids, []string{"alice", "bob"}) {
			t.Fatalf("KV v%d: %v %v", kv, ids, err)
		}
	}
}
