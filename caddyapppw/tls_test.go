package caddyapppw

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/caddyproc"
	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
)

// The TLS options the README promises, each against a real TLS server:
// the fake Nextcloud behind an HTTPS front, redis-server with its own TLS
// port, the dev Vault serving TLS. Every refusal is checked for its own
// cause in the log, not only for its status: a 502 or 503 alone would also
// pass if the server were simply down.

// lastRequestLine is the module's last per-request log line; the module
// writes it before it answers, so after a call it is that call's line.
// (Other lines, such as the token watcher's, come when they come.)
func lastRequestLine(t *testing.T, e *env) map[string]any {
	t.Helper()
	lines := e.logLines()
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i]["msg"] == "app password request" {
			return lines[i]
		}
	}
	t.Fatal("the module logged no request")
	return nil
}

// expectCause checks that the request just answered logged a cause that
// contains want.
func expectCause(t *testing.T, e *env, want string) {
	t.Helper()
	line := lastRequestLine(t, e)
	if c, _ := line["cause"].(string); !strings.Contains(c, want) {
		t.Fatalf("cause %q, want one with %q (line %v)", c, want, line)
	} else {
		t.Logf("cause: %s", c)
	}
}

// tlsFront serves target over HTTPS with the PKI's 127.0.0.1 certificate.
func tlsFront(t *testing.T, pki *testPKI, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(u))
	front.TLS = pki.serverTLS(t)
	front.StartTLS()
	t.Cleanup(front.Close)
	return front.URL
}

func TestNextcloudOverTLS(t *testing.T) {
	pki, otherCA := newTestPKI(t), newTestPKI(t)
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	front := tlsFront(t, pki, e.nc.URL)
	withNextcloud := func(block string) string {
		return strings.Replace(e.caddyfile(""), "nextcloud "+e.nc.URL+"\n", "nextcloud "+front+block+"\n", 1)
	}
	notProvisioned := `{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`
	unverified := `{"success":false,"error":"Failed to validate credentials"}`

	e.load(withNextcloud(" {\n ca_cert " + pki.caCert + "\n }"))
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 200, notProvisioned)

	// The system's CAs alone do not know the test CA.
	e.load(withNextcloud(""))
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 502, unverified)
	expectCause(t, e, "x509: certificate signed by unknown authority")

	e.load(withNextcloud(" {\n ca_cert " + otherCA.caCert + "\n }"))
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 502, unverified)
	expectCause(t, e, "x509: certificate signed by unknown authority")

	e.load(withNextcloud(" {\n insecure_skip_verify\n }"))
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 200, notProvisioned)
}

// startTLSRedis runs redis-server on a TLS port only (no plain port), with
// the PKI's 127.0.0.1 certificate and a password, until the test ends.
func startTLSRedis(t *testing.T, pki *testPKI, password string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server: the full suite (scripts/test) runs it, -short does not")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: apt-get install redis-server (scripts/test does)")
	}
	port := freePort(t)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", pki.serverCert, "--tls-key-file", pki.serverKey, "--tls-ca-cert-file", pki.caCert,
		"--tls-auth-clients", "no", "--requirepass", password,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); <-done })
	if err := caddyproc.WaitForLine(out, "Ready to accept connections", 30*time.Second); err != nil {
		t.Fatalf("redis-server with TLS: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func TestRedisOverTLSWithPassword(t *testing.T) {
	const redisPW = "redis-secret-0123456789"
	pki, otherCA := newTestPKI(t), newTestPKI(t)
	addr := startTLSRedis(t, pki, redisPW)
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	t.Setenv("REDIS_PASSWORD", redisPW)
	limit := func(password, ca, timeout string) string {
		return fmt.Sprintf("rate_limit 5 1h {\n redis rediss://%s/0 {\n password %s\n ca_cert %s\n timeout %s\n }\n on_error deny\n }", addr, password, ca, timeout)
	}

	// A long timeout: a TLS handshake on a busy machine under -race can
	// take longer than the default 100ms, and this part is about TLS, not
	// latency.
	e.load(e.caddyfile(limit("{env.REDIS_PASSWORD}", pki.caCert, "5s")))
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	// The counted attempt is in Redis, reached over TLS with the password.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(pki.caCert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	opts, err := redis.ParseURL("rediss://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Password, opts.TLSConfig.RootCAs = redisPW, pool
	rc := redis.NewClient(opts)
	t.Cleanup(func() { _ = rc.Close() })
	keys, err := rc.Keys(t.Context(), "caddy-apppw:*:alice").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("Redis keys %v (%v), want alice's", keys, err)
	}
	if n, err := rc.ZCard(t.Context(), keys[0]).Result(); err != nil || n != 1 {
		t.Fatalf("alice's attempts in Redis: %d (%v), want 1", n, err)
	}

	refused := func(cause string) {
		t.Helper()
		before := len(e.logLines())
		e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").expect(t, 503,
			`{"success":false,"error":"Rate limiter unavailable"}`)
		for _, l := range e.logLines()[before:] {
			if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "shared rate limiter unavailable") {
				if errText, _ := l["error"].(string); !strings.Contains(errText, cause) {
					t.Fatalf("limiter error %q, want one with %q", errText, cause)
				}
				return
			}
		}
		t.Fatalf("no 'shared rate limiter unavailable' line for this request")
	}
	// The refusals within a short timeout, shorter than the dial retries
	// of go-redis's pool would take: the cause must still be the dial's
	// own error, not the check's deadline.
	e.load(e.caddyfile(limit("{env.REDIS_PASSWORD}", otherCA.caCert, "300ms")))
	refused("x509: certificate signed by unknown authority")
	e.load(e.caddyfile(limit("not-the-password", pki.caCert, "300ms")))
	refused("WRONGPASS")

	data, err := os.ReadFile(e.logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), redisPW) || strings.Contains(string(data), "not-the-password") {
		t.Fatal("the log holds a Redis password")
	}
}

// tlsVault is a dev Vault serving TLS, and a root client that trusts it.
func tlsVault(t *testing.T, pki *testPKI, cert, key string, args ...string) *devvault.Server {
	t.Helper()
	v := devvault.Start(t, devvault.Options{Args: append([]string{"-tls-cert", cert, "-tls-key", key}, args...)})
	if !strings.HasPrefix(v.Addr, "https://127.0.0.1:") {
		t.Fatalf("dev Vault at %s, want https on 127.0.0.1", v.Addr)
	}
	return v
}

// vaultCase loads a config with the Vault block's extra lines and checks
// that a provisioning reaches Vault (want == "") or that storage is
// unavailable for the reason want.
func vaultCase(t *testing.T, e *env, uid, lines, want string) {
	t.Helper()
	e.vaultAuth = "token " + e.vault.Token + "\n" + lines
	e.load(e.caddyfile(""))
	e.nc.AddUser(uid, "", alicePW)
	if want == "" {
		e.call("POST", "/api/v1/users/"+uid+"/app-password", uid+":"+alicePW, "").expect(t, 200,
			`{"success":true,"message":"App password stored for `+uid+`","scopes":null}`)
		if got := e.stored(uid); got["app_password"] != alicePW {
			t.Fatalf("Vault holds %v", got)
		}
		return
	}
	e.call("GET", "/api/v1/users/"+uid+"/access", uid+":"+alicePW, "").expect(t, 503,
		`{"success":false,"error":"Secret storage unavailable"}`)
	expectCause(t, e, want)
}

// clearVaultTLSEnv unsets what the previous case set.
func clearVaultTLSEnv(t *testing.T) {
	for _, k := range []string{api.EnvVaultCACert, api.EnvVaultCAPath, api.EnvVaultClientCert, api.EnvVaultClientKey,
		api.EnvVaultTLSServerName, api.EnvVaultSkipVerify} {
		t.Setenv(k, "")
	}
}

const unknownAuthority = "x509: certificate signed by unknown authority"

// TestVaultTLSOptionsAndEnvironment: the vault block's TLS options and the
// VAULT_* variables Vault's CLI reads, and that the block wins over them.
func TestVaultTLSOptionsAndEnvironment(t *testing.T) {
	needsVault(t)
	pki, otherCA := newTestPKI(t), newTestPKI(t)
	e := newEnv(t, "")
	e.vault = tlsVault(t, pki, pki.serverCert, pki.serverKey)
	e.vault.Root = pki.rootClient(t, e.vault, "", "")
	e.vaultAddr = e.vault.Addr
	caDir := t.TempDir()
	caPEM, err := os.ReadFile(pki.caCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caDir, "ca.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	clearVaultTLSEnv(t)
	vaultCase(t, e, "u01", "", unknownAuthority)
	vaultCase(t, e, "u02", "ca_cert "+pki.caCert, "")
	vaultCase(t, e, "u03", "ca_cert "+otherCA.caCert, unknownAuthority)
	vaultCase(t, e, "u04", "ca_path "+caDir, "")
	vaultCase(t, e, "u05", "insecure_skip_verify", "")

	t.Setenv(api.EnvVaultCACert, pki.caCert)
	vaultCase(t, e, "u06", "", "")
	// The block wins over the environment, both ways.
	vaultCase(t, e, "u07", "ca_cert "+otherCA.caCert, unknownAuthority)
	t.Setenv(api.EnvVaultCACert, otherCA.caCert)
	vaultCase(t, e, "u08", "", unknownAuthority)
	vaultCase(t, e, "u09", "ca_cert "+pki.caCert, "")

	clearVaultTLSEnv(t)
	t.Setenv(api.EnvVaultCAPath, caDir)
	vaultCase(t, e, "u10", "", "")
	clearVaultTLSEnv(t)
	t.Setenv(api.EnvVaultSkipVerify, "true")
	vaultCase(t, e, "u11", "", "")
}

// TestVaultMutualTLS: the client certificate from the block and from
// VAULT_CLIENT_CERT/VAULT_CLIENT_KEY; without one the server refuses the
// handshake.
func TestVaultMutualTLS(t *testing.T) {
	needsVault(t)
	pki := newTestPKI(t)
	e := newEnv(t, "")
	e.vault = tlsVault(t, pki, pki.serverCert, pki.serverKey, "-tls-client-ca", pki.caCert)
	e.vault.Root = pki.rootClient(t, e.vault, pki.clientCert, pki.clientKey)
	e.vaultAddr = e.vault.Addr
	const noClientCert = "tls: certificate required"

	clearVaultTLSEnv(t)
	vaultCase(t, e, "u01", fmt.Sprintf("ca_cert %s\n client_cert %s\n client_key %s", pki.caCert, pki.clientCert, pki.clientKey), "")
	vaultCase(t, e, "u02", "ca_cert "+pki.caCert, noClientCert)

	t.Setenv(api.EnvVaultCACert, pki.caCert)
	vaultCase(t, e, "u03", "", noClientCert)
	t.Setenv(api.EnvVaultClientCert, pki.clientCert)
	t.Setenv(api.EnvVaultClientKey, pki.clientKey)
	vaultCase(t, e, "u04", "", "")
}

// TestVaultTLSServerName: the certificate names vault.internal only, and
// Caddy dials 127.0.0.1. Only tls_server_name (or VAULT_TLS_SERVER_NAME)
// makes the name checked the certificate's; another name fails.
func TestVaultTLSServerName(t *testing.T) {
	needsVault(t)
	pki := newTestPKI(t)
	cert, key := pki.issue(t, "vault-internal", x509.ExtKeyUsageServerAuth, []string{"vault.internal"}, nil)
	e := newEnv(t, "")
	e.vault = tlsVault(t, pki, cert, key)
	e.vault.Root = pki.rootClientFor(t, e.vault, &api.TLSConfig{CACert: pki.caCert, TLSServerName: "vault.internal"})
	e.vaultAddr = e.vault.Addr

	clearVaultTLSEnv(t)
	vaultCase(t, e, "u01", "ca_cert "+pki.caCert, "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs")
	vaultCase(t, e, "u02", "ca_cert "+pki.caCert+"\n tls_server_name vault.internal", "")
	vaultCase(t, e, "u03", "ca_cert "+pki.caCert+"\n tls_server_name other.internal", "x509: certificate is valid for vault.internal, not other.internal")

	t.Setenv(api.EnvVaultCACert, pki.caCert)
	t.Setenv(api.EnvVaultTLSServerName, "vault.internal")
	vaultCase(t, e, "u04", "", "")
}
