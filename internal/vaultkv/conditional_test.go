package vaultkv

import (
	"errors"
	"testing"
)

// DeleteIfUnchanged deletes the record it was given the version of, and
// nothing newer: on KV v2 by the version number, on KV v1 by the
// record's fingerprint.
func TestDeleteIfUnchanged(t *testing.T) {
	v := vaultServer(t)
	for _, kv := range []int{1, 2} {
		s := newStore(t, v, v.Addr, kv)
		ctx := t.Context()
		save := func(uid, pw string) *Record {
			t.Helper()
			rec, err := s.Load(ctx, uid)
			if errors.Is(err, ErrNotFound) {
				rec, err = &Record{UserID: uid}, nil
			}
			if err != nil {
				t.Fatal(err)
			}
			rec.AppPassword = pw
			if err := s.Save(ctx, rec); err != nil {
				t.Fatal(err)
			}
			if rec, err = s.Load(ctx, uid); err != nil {
				t.Fatal(err)
			}
			return rec
		}

		// Unchanged: deleted, every version with it.
		old := save("alice", alicePW)
		if err := s.DeleteIfUnchanged(ctx, "alice", old.Version); err != nil {
			t.Fatalf("KV v%d: %v", kv, err)
		}
		if _, err := s.Load(ctx, "alice"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrLeftovers) {
			t.Fatalf("KV v%d: after the delete Load says %v", kv, err)
		}

		// Replaced since it was read: kept.
		old = save("bob", alicePW)
		current := save("bob", alicePW2)
		if err := s.DeleteIfUnchanged(ctx, "bob", old.Version); !errors.Is(err, ErrConflict) {
			t.Fatalf("KV v%d: deleting a replaced record: %v, want ErrConflict", kv, err)
		}
		if rec, err := s.Load(ctx, "bob"); err != nil || rec.AppPassword != alicePW2 || rec.Version != current.Version {
			t.Fatalf("KV v%d: bob is %+v, %v", kv, rec, err)
		}

		// Gone: ErrNotFound.
		if err := s.DeleteIfUnchanged(ctx, "carol", 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("KV v%d: deleting nothing: %v", kv, err)
		}
		if kv == 2 {
			// Soft-deleted by an operator: no password to sweep, and
			// the deleted versions stay for "vault kv undelete".
			dave := save("dave", alicePW)
			if err := v.Root.KVv2(s.mount).Delete(ctx, s.secretPath("dave")); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteIfUnchanged(ctx, "dave", dave.Version); !errors.Is(err, ErrNotFound) {
				t.Fatalf("soft-deleted record: %v", err)
			}
			if _, err := v.Root.KVv2(s.mount).GetMetadata(ctx, s.secretPath("dave")); err != nil {
				t.Fatalf("the soft-deleted record's metadata went: %v", err)
			}
		}
	}
}
