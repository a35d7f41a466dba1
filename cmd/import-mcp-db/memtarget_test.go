package main

import (
	"context"
	"fmt"
	"maps"
	"sync"
)

// memTarget is a Target in memory with KV v2's check-and-set: each write
// bumps the user's version, a Put naming another version is refused.
type memTarget struct {
	mu   sync.Mutex
	recs map[string]memEntry
	puts int // successful writes

	// beforePut, if set, runs before each Put: a concurrent writer.
	beforePut func(userID string)
}

type memEntry struct {
	rec     Record
	version int
}

func newMemTarget() *memTarget { return &memTarget{recs: map[string]memEntry{}} }

// seed stores rec as the module would have, outside the import.
func (m *memTarget) seed(rec Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[rec.UserID] = memEntry{rec: rec, version: m.recs[rec.UserID].version + 1}
}

func (m *memTarget) snapshot() map[string]Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Record{}
	for k, e := range maps.All(m.recs) {
		out[k] = e.rec
	}
	return out
}

func (m *memTarget) writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.puts
}

func (m *memTarget) Current(_ context.Context, userID string) (Current, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.recs[userID]
	if !ok {
		return Current{}, nil
	}
	return Current{Found: true, UpdatedAt: e.rec.UpdatedAt, Rev: e.version}, nil
}

func (m *memTarget) Put(_ context.Context, rec Record, prev Current) error {
	if m.beforePut != nil {
		m.beforePut(rec.UserID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.recs[rec.UserID]
	want := 0
	if prev.Found {
		want = prev.Rev.(int)
	}
	if e.version != want {
		return fmt.Errorf("check-and-set %d, stored %d: %w", want, e.version, ErrConflict)
	}
	m.recs[rec.UserID] = memEntry{rec: rec, version: e.version + 1}
	m.puts++
	return nil
}
