package main

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-apppw/caddy-apppw/internal/readme"
)

// README.md's sample outputs of the dry run and of the import, compared
// with the command's real output on the rows they show (alice new; frank
// newer in Vault; judy up to date; dave under another key): each real
// line must have the shape of a sample line and each sample line the shape
// of a real one — the same text, with the user ids, numbers and times let
// vary (internal/readme's Shapes).
func TestREADMEImportOutputs(t *testing.T) {
	blocks, err := readme.Load("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	samples := map[string]string{} // "--dry-run" or "" → the sample
	for _, b := range blocks {
		switch {
		case b.Lang == "" && strings.HasPrefix(b.Text, "would import "):
			samples["--dry-run"] = b.Text
		case b.Lang == "" && strings.HasPrefix(b.Text, "imported "):
			samples[""] = b.Text
		}
	}
	if len(samples) != 2 {
		t.Fatalf("README.md: found the samples %v, want the dry run's and the import's", samples)
	}

	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(`DELETE FROM app_passwords WHERE user_id NOT IN ('alice', 'dave', 'frank', 'judy')`); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	for _, flag := range []string{"--dry-run", ""} {
		t.Run("import"+flag, func(t *testing.T) {
			target := newMemTarget()
			frank := f.row("frank").record(t)
			frank.AppPassword, frank.UpdatedAt = "newer-password-of-frank-0000", frank.UpdatedAt+100
			target.seed(frank)
			target.seed(f.row("judy").record(t))
			args := []string{"--from", "sqlite:///" + db, "--config", "Caddyfile"}
			if flag != "" {
				args = append(args, flag)
			}
			_, out, errOut := cli(t, target, map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, args...)
			shapes := readme.Shapes(samples[flag], "alice", "dave", "frank", "judy")
			if err := readme.MatchShapes(shapes, out, true); err != nil {
				t.Fatalf("README.md's sample of import-mcp-db %s and the real output differ:\n%v\nreal output:\n%s%s", flag, err, out, errOut)
			}
		})
	}
}
