package vaultkv

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// The lock table holds entries only for writes in flight: after many
// users, and after a waiter that gave up, it is empty again.
func TestUserLocksStayBounded(t *testing.T) {
	var l userLocks
	var wg sync.WaitGroup
	counts := make([]int, 20) // one slot per user
	for i := range 200 {
		wg.Go(func() {
			key := fmt.Sprintf("user%d", i%20)
			unlock, err := l.lock(t.Context(), key)
			if err != nil {
				t.Error(err)
				return
			}
			counts[i%20]++ // guarded by the user's lock alone: -race checks it
			unlock()
		})
	}
	wg.Wait()
	if n := l.size(); n != 0 {
		t.Fatalf("%d entries left after all writes", n)
	}
	for k, c := range counts {
		if c != 10 {
			t.Fatalf("user%d: %d writes, want 10", k, c)
		}
	}

	unlock, err := l.lock(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.lock(ctx, "alice"); err != context.Canceled {
		t.Fatalf("a waiter whose request ended: %v", err)
	}
	if n := l.waiting("alice"); n != 1 {
		t.Fatalf("%d holders and waiters, want 1", n)
	}
	unlock()
	if n := l.size(); n != 0 {
		t.Fatalf("%d entries left", n)
	}
}
