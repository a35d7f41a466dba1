package main

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// Row is one row of the MCP server's app_passwords table as stored. A NULL
// is nil; such a row fails its user, not the read.
type Row struct {
	UserID    *string
	Token     []byte // encrypted_password: a Fernet token of the password
	CreatedAt *int64
	UpdatedAt *int64
	Scopes    *string // JSON array of scope strings, NULL = no restriction
	Username  *string // the Nextcloud login name
}

// source reads the app_passwords table, never writing to the database.
type source interface {
	rows(ctx context.Context) ([]Row, error)
	Close() error
}

// selectRows is the one query of both engines: the table and the columns
// of the MCP server's migrations 002 and 003.
const selectRows = `SELECT user_id, encrypted_password, created_at, updated_at, scopes, username FROM app_passwords`

// openSource opens the database a DATABASE_URL names, in the SQLAlchemy
// spelling the MCP server takes: sqlite:////abs.db, sqlite:///rel.db,
// postgresql[+driver]://user:pw@host:port/db (or postgres://). Its errors
// never quote the URL, which may hold a password.
func openSource(ctx context.Context, dbURL string) (source, error) {
	scheme, rest, ok := strings.Cut(dbURL, "://")
	if !ok {
		return nil, errors.New("not a database URL (sqlite:///… or postgresql://…)")
	}
	dialect, _, _ := strings.Cut(strings.ToLower(scheme), "+") // the driver (+psycopg, +aiosqlite) is Python's
	switch dialect {
	case "sqlite":
		path, err := sqlitePath(rest)
		if err != nil {
			return nil, err
		}
		return openSQLite(ctx, path)
	case "postgresql", "postgres":
		return openPostgres(ctx, "postgresql://"+rest)
	default:
		return nil, errors.New("unsupported database: the MCP server's URL is sqlite:///… or postgresql://…")
	}
}

// sqlitePath is the file of an SQLAlchemy sqlite URL after "sqlite://":
// "/rel.db" is relative to the working directory, "//abs.db" absolute.
// Query parameters are the Python driver's and are dropped.
func sqlitePath(rest string) (string, error) {
	rest, _, _ = strings.Cut(rest, "?")
	path, ok := strings.CutPrefix(rest, "/")
	if !ok && rest != "" {
		return "", errors.New("an sqlite URL names a file as sqlite:///relative.db or sqlite:////absolute.db")
	}
	if path == "" || path == ":memory:" {
		return "", errors.New("an in-memory SQLite database holds nothing to import: give the file of TOKEN_STORAGE_DB or DATABASE_URL")
	}
	return path, nil
}

// sortRows orders rows by user id, so the output is the same on both
// engines whatever their collation.
func sortRows(rows []Row) {
	slices.SortStableFunc(rows, func(a, b Row) int {
		return strings.Compare(deref(a.UserID), deref(b.UserID))
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
