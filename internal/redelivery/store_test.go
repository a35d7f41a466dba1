package redelivery

import (
	"context"
	"slices"
	"sync"

	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// mapStore is a WorkerStore in memory with KV v2's check-and-set: each
// write is a new version, written only over the version it was loaded at.
// before, when set, runs before each write, with the lock released: a
// test makes a concurrent writer land there.
type mapStore struct {
	mu      sync.Mutex
	recs    map[string]vaultkv.Record
	version int
	before  func()
}

func newMapStore() *mapStore { return &mapStore{recs: map[string]vaultkv.Record{}} }

func (m *mapStore) Load(_ context.Context, uid string) (*vaultkv.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs[uid]
	if !ok {
		return nil, vaultkv.ErrNotFound
	}
	rec.Scopes = slices.Clone(rec.Scopes)
	return &rec, nil
}

func (m *mapStore) Save(_ context.Context, rec *vaultkv.Record) error {
	if f := m.before; f != nil {
		m.before = nil
		f()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recs[rec.UserID].Version != rec.Version {
		return vaultkv.ErrConflict
	}
	m.version++
	rec.Version = m.version
	m.recs[rec.UserID] = *rec
	return nil
}

func (m *mapStore) List(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id := range m.recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (m *mapStore) DeleteIfUnchanged(_ context.Context, uid string, version int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs[uid]
	switch {
	case !ok:
		return vaultkv.ErrNotFound
	case rec.Version != version:
		return vaultkv.ErrConflict
	}
	delete(m.recs, uid)
	return nil
}

// put stores a record as a writer of the API would, returning it.
func (m *mapStore) put(rec vaultkv.Record) vaultkv.Record {
	cur, err := m.Load(context.Background(), rec.UserID)
	if err == nil {
		rec.Version = cur.Version
	} else {
		rec.Version = 0
	}
	if err := m.Save(context.Background(), &rec); err != nil {
		panic(err)
	}
	return rec
}

func (m *mapStore) get(uid string) (vaultkv.Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs[uid]
	return rec, ok
}
