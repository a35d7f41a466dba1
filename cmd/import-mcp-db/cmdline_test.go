package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// --help is an answer, not a usage error: exit 0, the usage on stderr.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		code, out, errOut := cli(t, newMemTarget(), nil, arg)
		if code != exitOK || out != "" || !strings.HasPrefix(errOut, "usage: import-mcp-db --from <DATABASE_URL> --config Caddyfile [--adapter NAME]") {
			t.Errorf("%s: exit %d, stdout %q, stderr:\n%s", arg, code, out, errOut)
		}
	}
}

// --adapter reaches openTarget with --config.
func TestAdapterFlag(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	var got []string
	code, _, errOut := cliWith(t, func(_ context.Context, configPath, adapter string) (Target, error) {
		got = []string{configPath, adapter}
		return newMemTarget(), nil
	}, map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, "--from", "sqlite:///"+db, "--config", "/etc/caddy/caddy.conf", "--adapter", "caddyfile")
	if code != exitFailed || !slices.Equal(got, []string{"/etc/caddy/caddy.conf", "caddyfile"}) {
		t.Errorf("exit %d, openTarget%q\n%s", code, got, errOut)
	}
}

// The program as an operator builds and runs it (README: go -C
// cmd/import-mcp-db build), against a Caddyfile and the dev Vault: its
// exit codes and lines come from main, with the real openTarget.
func TestCommandLine(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db)
	e := newVaultEnv(t, 2, tokenAuth)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "import-mcp-db")
	build := exec.Command("go", "-C", wd, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go -C %s build: %v\n%s", wd, err, out)
	}

	run := func(env []string, args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String(), errOut.String()
		case errors.As(err, &ee):
			return ee.ExitCode(), out.String(), errOut.String()
		}
		t.Fatal(err)
		return 0, "", ""
	}
	key := []string{"TOKEN_ENCRYPTION_KEY=" + f.Key}
	args := []string{"--from", "sqlite:///" + db, "--config", e.caddyfile}

	if code, out, errOut := run(nil, args...); code != exitUsage || out != "" || !strings.Contains(errOut, "import-mcp-db: TOKEN_ENCRYPTION_KEY is not set") {
		t.Errorf("without the key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, errOut := run(key, append(args, "--dry-run")...); code != exitFailed || !strings.HasSuffix(out, "\ndry run, nothing written: 5 would import, 0 skipped, 4 failed\n") {
		t.Errorf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	if ids := e.ids(); len(ids) != 0 {
		t.Errorf("the dry run wrote %v", ids)
	}
	code, out, errOut := run(key, args...)
	if code != exitFailed || !strings.HasSuffix(out, "\n5 imported, 0 skipped, 4 failed\n") {
		t.Errorf("import: exit %d\n%s%s", code, out, errOut)
	}
	noSecrets(t, out+errOut, append(f.secrets(), e.vault.Token)...)
	if ids := e.ids(); !slices.Equal(ids, []string{"alice", "bob", "carol", "frank", "judy"}) {
		t.Errorf("in Vault: %v", ids)
	}
	if code, _, errOut := run(nil, "--help"); code != exitOK || !strings.HasPrefix(errOut, "usage: import-mcp-db") {
		t.Errorf("--help: exit %d\n%s", code, errOut)
	}
}
