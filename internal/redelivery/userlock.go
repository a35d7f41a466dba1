package redelivery

import (
	"context"
	"sync"
)

// userLocks serialises, within a process, the deliveries of one user: a
// client's change (its Vault write, its delivery, its settling) and a
// re-delivery round's (its read, its delivery, its settling). Without it
// a round that read a record just before a client changed it could hand
// the MCP server the stale state after the client's new one: the mark
// rules would still converge, but the MCP server would see the old
// scopes after the new password. Between replicas the mark rules alone
// keep the result right.
var userLocks = struct {
	mu    sync.Mutex
	locks map[string]*userLock
}{locks: map[string]*userLock{}}

type userLock struct {
	ch   chan struct{} // holds one token while locked
	refs int           // holders and waiters; the entry goes at 0
}

// Lock takes userID's lock, waiting at most until ctx ends, and returns
// its release. Entries exist only while held or awaited, so the map stays
// as small as the requests in flight.
func Lock(ctx context.Context, userID string) (func(), error) {
	userLocks.mu.Lock()
	l := userLocks.locks[userID]
	if l == nil {
		l = &userLock{ch: make(chan struct{}, 1)}
		userLocks.locks[userID] = l
	}
	l.refs++
	userLocks.mu.Unlock()

	done := func() {
		userLocks.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(userLocks.locks, userID)
		}
		userLocks.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
