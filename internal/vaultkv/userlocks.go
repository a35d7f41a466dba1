package vaultkv

import (
	"context"
	"sync"
)

// userLocks serialises the writes of one user within the process, for
// storage without check-and-set (KV v1). An entry lives only while a
// write holds or waits for it, so the table holds no more entries than
// there are writes in flight, however many users pass through. The zero
// value is ready to use.
type userLocks struct {
	mu sync.Mutex
	m  map[string]*userLock
}

type userLock struct {
	held chan struct{} // one slot: full while held
	refs int           // holders and waiters; the entry goes at 0
}

// lock takes the lock of key, waiting at most until ctx ends (the request's
// Vault budget), and returns its unlock.
func (l *userLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*userLock{}
	}
	e := l.m[key]
	if e == nil {
		e = &userLock{held: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()

	select {
	case e.held <- struct{}{}:
		return func() { <-e.held; l.release(key, e) }, nil
	case <-ctx.Done():
		l.release(key, e)
		return nil, ctx.Err()
	}
}

func (l *userLocks) release(key string, e *userLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, key)
	}
}

// waiting is how many writes hold or wait for the lock of key.
func (l *userLocks) waiting(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[key]; e != nil {
		return e.refs
	}
	return 0
}

// size is how many keys have an entry.
func (l *userLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
