package main

import (
	"strings"
	"testing"
)

func TestSQLitePath(t *testing.T) {
	for rest, want := range map[string]string{
		"/tokens.db":                          "tokens.db",           // sqlite:///tokens.db
		"/data/tokens.db":                     "data/tokens.db",      // sqlite:///data/tokens.db
		"//app/data/tokens.db":                "/app/data/tokens.db", // sqlite:////app/data/tokens.db
		"//app/tokens.db?check_same_thread=0": "/app/tokens.db",
	} {
		if got, err := sqlitePath(rest); err != nil || got != want {
			t.Errorf("sqlitePath(%q) = %q, %v; want %q", rest, got, err, want)
		}
	}
	for _, rest := range []string{"", "/", "/:memory:", "host/tokens.db"} {
		if got, err := sqlitePath(rest); err == nil {
			t.Errorf("sqlitePath(%q) = %q, want an error", rest, got)
		}
	}
}

// A URL that cannot be opened is refused without quoting it: it may hold
// the database password.
func TestSourceErrorsDoNotShowTheURL(t *testing.T) {
	for url, want := range map[string]string{
		"mysql://mcp:hunter2pw@db/mcp":                   "unsupported database: the MCP server's URL is sqlite:///… or postgresql://…",
		"mcp:hunter2pw@db/mcp":                           "not a database URL (sqlite:///… or postgresql://…)",
		"postgresql+psycopg://mcp:hunter2pw@db:port/mcp": "cannot parse the PostgreSQL URL (not shown: it may hold a password); check host:port and percent-encode the password's special characters",
		"postgres://mcp:hunter2 pw@db:5432/mcp":          "cannot parse the PostgreSQL URL (not shown: it may hold a password); check host:port and percent-encode the password's special characters",
		"sqlite://":                                      "an in-memory SQLite database holds nothing to import: give the file of TOKEN_STORAGE_DB or DATABASE_URL",
	} {
		_, err := openSource(t.Context(), url)
		if err == nil || err.Error() != want {
			t.Errorf("openSource(%q): %v, want %q", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("openSource(%q): the error shows the password", url)
		}
	}
}

func TestSQLiteMissingFile(t *testing.T) {
	_, err := openSource(t.Context(), "sqlite:///"+t.TempDir()+"/none.db")
	if err == nil || !strings.Contains(err.Error(), "the SQLite database: stat ") || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("err = %v", err)
	}
}

// The MCP server's database is opened read-only: the import can run beside
// the live server and cannot change its table.
func TestSQLiteSourceIsReadOnly(t *testing.T) {
	db := t.TempDir() + "/tokens.db"
	generate(t, "--sqlite", db)
	src, err := openSource(t.Context(), "sqlite:///"+db)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rows, err := src.rows(t.Context())
	if err != nil || len(rows) != 9 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	_, err = src.(*sqliteSource).db.ExecContext(t.Context(), "DELETE FROM app_passwords")
	if err == nil || !strings.Contains(err.Error(), "readonly database") {
		t.Errorf("a write through the source: %v, want SQLite's readonly error", err)
	}
}
