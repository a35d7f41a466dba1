package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-apppw/caddy-apppw/internal/readme"
)

// Every import-mcp-db flag README.md spells, in prose or in a ```sh block
// (`--key-env NAME`, `--adapter caddyfile`, `--dry-run`, …), is one the
// importer defines (its usage lists it), and the two whose README value
// matters work as the README says: `--key-env NAME` reads the key from
// NAME, `--adapter caddyfile` reaches the config's loading.
func TestREADMEImporterSpellings(t *testing.T) {
	text, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, _, usage := cli(t, newMemTarget(), nil, "--help")
	values := map[string]string{}
	for _, u := range readme.ProseFlags(string(text)) {
		if u.Command != "import-mcp-db" || u.Flag == "" {
			continue
		}
		name := strings.TrimPrefix(u.Flag, "--")
		if !strings.Contains(usage, "\n  -"+name+" ") && !strings.Contains(usage, "\n  -"+name+"\n") {
			t.Errorf("README.md line %d: import-mcp-db has no flag %s; its usage:\n%s", u.Line, u.Flag, usage)
		}
		if u.Value != "" && !strings.HasPrefix(u.Value, `"`) {
			values[u.Flag] = u.Value
		}
	}
	keyEnv, adapter := values["--key-env"], values["--adapter"]
	if keyEnv == "" || adapter == "" {
		t.Fatalf("README.md no longer spells `--key-env NAME` and `--adapter caddyfile` in prose (found %v)", values)
	}

	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	var gotAdapter string
	code, out, errOut := cliWith(t, func(_ context.Context, _, a string) (Target, error) {
		gotAdapter = a
		return newMemTarget(), nil
	}, map[string]string{keyEnv: f.Key}, "--from", "sqlite:///"+db, "--config", "Caddyfile", "--key-env", keyEnv, "--adapter", adapter)
	if code != exitFailed || !strings.HasSuffix(out, "\n5 imported, 0 skipped, 4 failed\n") || gotAdapter != adapter {
		t.Fatalf("--key-env %s --adapter %s: exit %d, adapter %q\n%s%s", keyEnv, adapter, code, gotAdapter, out, errOut)
	}
}
