package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // pure Go: the command needs no cgo
)

// sqliteSource reads an SQLite file opened read-only, so the import can
// run beside a live MCP server without ever writing its database.
type sqliteSource struct{ db *sql.DB }

func openSQLite(ctx context.Context, path string) (*sqliteSource, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	// A read-only open of a missing file fails with SQLite's terse
	// "unable to open database file": say which file instead.
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("the SQLite database: %w", err)
	}
	// A "file:" URI, so that SQLite itself applies mode=ro; the busy
	// timeout waits out a write of the running MCP server.
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", abs, err)
	}
	return &sqliteSource{db: db}, nil
}

func (s *sqliteSource) rows(ctx context.Context) ([]Row, error) {
	rs, err := s.db.QueryContext(ctx, selectRows)
	if err != nil {
		return nil, fmt.Errorf("reading app_passwords: %w", err)
	}
	defer rs.Close()
	var out []Row
	for rs.Next() {
		var r Row
		if err := rs.Scan(&r.UserID, &r.Token, &r.CreatedAt, &r.UpdatedAt, &r.Scopes, &r.Username); err != nil {
			return nil, fmt.Errorf("reading app_passwords: %w", err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("reading app_passwords: %w", err)
	}
	return out, nil
}

func (s *sqliteSource) Close() error { return s.db.Close() }
