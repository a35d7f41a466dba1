package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgServer is a PostgreSQL server (Debian's postgresql package) that the
// test started on a free loopback port, with its own data directory.
type pgServer struct {
	dir  string // data directory's parent, also the unix socket directory
	port int
}

// startPostgres runs initdb and postgres until the test ends. Host
// connections need a password (scram-sha-256), as the MCP server's do.
// PostgreSQL refuses to run as root: under root it runs as the postgres
// user the Debian package creates.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	slices.SortFunc(bins, func(a, b string) int { return pgMajor(a) - pgMajor(b) })
	needTool(t, len(bins) > 0, "the PostgreSQL server (/usr/lib/postgresql/*/bin/postgres)", "postgresql")
	bin := filepath.Dir(bins[len(bins)-1])

	// Not t.TempDir: its parents are private to root, and the server
	// may run as another user.
	dir, err := os.MkdirTemp("", "import-mcp-db-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PostgreSQL refuses to run as root and there is no postgres user (the postgresql package creates it): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	cmd := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.Dir = dir
		c.Env = []string{"LANG=C", "LC_ALL=C", "PATH=/usr/bin:/bin"}
		if cred != nil {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return c
	}

	data := filepath.Join(dir, "data")
	if out, err := cmd("initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}

	s := &pgServer{dir: dir, port: freePort(t)}
	srv := cmd("postgres", "-D", data, "-p", strconv.Itoa(s.port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "logging_collector=off")
	var log lockedBuffer
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	})

	// Poll with a deadline until the server takes connections.
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(t.Context(), s.socketDSN("postgres"))
		if err == nil {
			conn.Close(t.Context())
			break
		}
		select {
		case <-done:
			t.Fatalf("postgres exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres not ready after 60s: %v\n%s", err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func pgMajor(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// socketDSN connects as the superuser over the unix socket (trust).
func (s *pgServer) socketDSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.dir, s.port, db)
}

// exec runs SQL (several statements) as the superuser.
func (s *pgServer) exec(t *testing.T, db, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), s.socketDSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	if _, err := conn.PgConn().Exec(t.Context(), sql).ReadAll(); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The MCP server's database on PostgreSQL: its role logs in with a
// password over TCP, as in a DATABASE_URL; the table holds Fernet tokens
// Python made, in a BYTEA column.
func TestImportPostgres(t *testing.T) {
	sqlFile := filepath.Join(t.TempDir(), "fixture.sql")
	f := generate(t, "--sql", sqlFile)
	fixtureSQL, err := os.ReadFile(sqlFile)
	if err != nil {
		t.Fatal(err)
	}
	s := startPostgres(t)

	const dbPassword = "pg-p@ss:w/rd-s3cret" // needs percent-encoding in a URL
	s.exec(t, "postgres", `CREATE ROLE mcp LOGIN PASSWORD '`+dbPassword+`'`)
	s.exec(t, "postgres", `CREATE DATABASE mcp OWNER mcp`)
	owner := fmt.Sprintf("postgresql://mcp:%s@127.0.0.1:%d/mcp?sslmode=disable", url.QueryEscape(dbPassword), s.port)
	conn, err := pgx.Connect(t.Context(), owner)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.PgConn().Exec(t.Context(), string(fixtureSQL)).ReadAll()
	conn.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	for _, scheme := range []string{"postgresql+psycopg", "postgresql", "postgres"} {
		t.Run(scheme, func(t *testing.T) {
			scenario(t, f, scheme+strings.TrimPrefix(owner, "postgresql"), dbPassword, url.QueryEscape(dbPassword))
		})
	}
	// The same into the plugin's Vault store named by a Caddyfile, then
	// that Caddyfile in Caddy.
	t.Run("into Vault", func(t *testing.T) {
		e := newVaultEnv(t, 2, tokenAuth)
		scenarioInto(t, e.store(), f, "postgresql+psycopg"+strings.TrimPrefix(owner, "postgresql"), dbPassword, url.QueryEscape(dbPassword))
		e.throughCaddy(f, "alice", "bob", "carol", "judy")
		e.listed()
	})

	// A wrong database password stops the run before anything is read,
	// without showing the password.
	wrong := strings.Replace(owner, url.QueryEscape(dbPassword), "wrong-s3cret", 1)
	code, out, errOut := cli(t, newMemTarget(), map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, "--from", wrong, "--config", "Caddyfile")
	if code != exitUsage || out != "" || !strings.Contains(errOut, "password authentication failed for user \"mcp\"") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	noSecrets(t, errOut, "wrong-s3cret")
}
