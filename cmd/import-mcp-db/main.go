// Command import-mcp-db copies the app passwords that a running Nextcloud
// MCP server keeps in its own database (table app_passwords, Fernet-
// encrypted) into Vault, in the layout of the caddy-apppw module, so that
// users provisioned before the module arrived need not provision again.
//
//	import-mcp-db --from <DATABASE_URL> --config Caddyfile [--adapter NAME] [--key-env TOKEN_ENCRYPTION_KEY] [--dry-run]
//
// The Vault it writes to, and how it logs in, are those of the config's
// app_password handler: the plugin's own store, built as the handler
// builds it (every auth method, VAULT_* variables, {env.*} placeholders).
// The key is read from an environment variable, never a flag.
//
// It is its own Go module, so that no Caddy built with the plugin carries
// an SQL engine. It prints one line per user (imported, skipped and why,
// failed and why) and a summary; never a password or the key. Exit status:
// 0 when no user failed, 1 when some did, 2 when the run could not start
// (nothing was written).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const (
	exitOK     = 0
	exitFailed = 1 // some users failed; the others were imported
	exitUsage  = 2 // nothing was read or written
)

// command is the program with its surroundings injected, for tests.
type command struct {
	getenv     func(string) string
	openTarget func(ctx context.Context, configPath, adapter string) (Target, error)
	stdout     io.Writer
	stderr     io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := command{getenv: os.Getenv, openTarget: openTarget, stdout: os.Stdout, stderr: os.Stderr}.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func (c command) run(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("import-mcp-db", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	from := fs.String("from", "", "the MCP server's DATABASE_URL: sqlite:////abs.db, sqlite:///rel.db or postgresql://user:pw@host:port/db (required)")
	config := fs.String("config", "", "the Caddyfile (or JSON config) whose app_password handler names the Vault to import into, and how to log in (required)")
	adapter := fs.String("adapter", "", "the config adapter, as for caddy run (default: caddyfile for a file named Caddyfile* or *.caddyfile, else JSON)")
	keyEnv := fs.String("key-env", "TOKEN_ENCRYPTION_KEY", "the environment variable that holds the MCP server's Fernet key")
	dryRun := fs.Bool("dry-run", false, "decrypt and compare with Vault, print what would be imported, write nothing")
	fs.Usage = func() {
		fmt.Fprintln(c.stderr, `usage: import-mcp-db --from <DATABASE_URL> --config Caddyfile [--adapter NAME] [--key-env TOKEN_ENCRYPTION_KEY] [--dry-run]

Copies the MCP server's app_passwords rows into the Vault of the config's
app_password handler, logging in as that handler does. One line per user:
imported, skipped (why) or failed (why); then a summary. A user whose Vault
record is as new or newer is skipped. Exit 0: none failed; 1: some failed;
2: could not start, nothing written.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK // asked for: the usage is the answer
		}
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		return c.usage(fs, "unexpected arguments")
	case *from == "":
		return c.usage(fs, "--from is required")
	case *config == "":
		return c.usage(fs, "--config is required")
	}

	key, err := loadKey(c.getenv, *keyEnv)
	if err != nil {
		return c.fatal(err)
	}
	src, err := openSource(ctx, *from)
	if err != nil {
		return c.fatal(fmt.Errorf("--from: %w", err))
	}
	defer src.Close()
	rows, err := src.rows(ctx)
	if err != nil {
		return c.fatal(err)
	}
	target, err := c.openTarget(ctx, *config, *adapter)
	if err != nil {
		return c.fatal(fmt.Errorf("--config %s: %w", *config, err))
	}
	if cl, ok := target.(io.Closer); ok {
		defer cl.Close()
	}

	im := &importer{target: target, key: key, dryRun: *dryRun, out: c.stdout}
	t := im.run(ctx, rows)
	if err := ctx.Err(); err != nil {
		fmt.Fprintln(c.stderr, "import-mcp-db: interrupted; run it again to import the rest")
		return exitFailed
	}
	if t[failed] > 0 {
		return exitFailed
	}
	return exitOK
}

func (c command) usage(fs *flag.FlagSet, msg string) int {
	fmt.Fprintln(c.stderr, "import-mcp-db:", msg)
	fs.Usage()
	return exitUsage
}

func (c command) fatal(err error) int {
	fmt.Fprintln(c.stderr, "import-mcp-db:", err)
	return exitUsage
}
