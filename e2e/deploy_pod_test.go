package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
)

// slirpHost is the address at which a pod on podman's slirp4netns network
// with allow_host_loopback reaches this machine's loopback: the dev Vault,
// the fake Nextcloud and the TokenReview API stay on 127.0.0.1, and no
// test traffic goes to a bridge address.
const slirpHost = "10.0.2.2"

// TestDeployPod runs deploy/kubernetes/ as users apply it, with podman
// kube play: the image scripts/build-image makes beside a container of the
// MCP server's double, the Caddyfile from the ConfigMap, Vault's
// Kubernetes auth with the pod's token. The test changes the manifests
// only where a machine without a cluster must: image names, the Vault and
// Nextcloud addresses, the published ports (hostPort on 127.0.0.1), and
// the projected service-account token, which podman cannot mint (no API
// server): a file with the token the test's TokenReview API approves
// takes its place at the same path.
func TestDeployPod(t *testing.T) {
	needsContainers(t)
	caddyImg, mcpImg := caddyImage(t), mcpDoubleImage(t)

	nc := fakenextcloud.New(t)
	nc.AddUser("alice", "alice@example.com", appPassword)
	vault := devvault.Start(t, devvault.Options{})
	review := newTokenReviewAPI(t, "caddy", "mcp")
	kubernetesAuth(t, vault, review.URL)

	dir := t.TempDir()
	tokenDir := filepath.Join(dir, "token")
	if err := os.MkdirAll(tokenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Readable by the fsGroup, as the kubelet's projection (mode 0440).
	if err := os.WriteFile(filepath.Join(tokenDir, "vault-token"), []byte(review.token), 0o444); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret.json")
	// podman's form of a Secret: a JSON object of base64 values.
	if err := os.WriteFile(secret, []byte(`{"token-encryption-key":"`+base64.StdEncoding.EncodeToString([]byte("not-used-by-the-double"))+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	httpPort, metricsPort := freePort(t), freePort(t)
	vaultURL := strings.Replace(vault.Addr, "127.0.0.1", slirpHost, 1)
	ncURL := strings.Replace(nc.URL, "127.0.0.1", slirpHost, 1)
	deployment := manifest(t, "deployment.yaml",
		"image: registry.example.com/caddy-apppw:latest", "image: "+caddyImg,
		"image: ghcr.io/cbcoutinho/nextcloud-mcp-server:latest", "image: "+mcpImg,
		"value: https://vault.vault.svc:8200", "value: "+vaultURL,
		"value: https://cloud.example.com", "value: "+ncURL, // NEXTCLOUD_HOST and NEXTCLOUD_URL
		"containerPort: 8080\n", fmt.Sprintf("containerPort: 8080\n              hostPort: %d\n              hostIP: 127.0.0.1\n", httpPort),
		"containerPort: 9180\n", fmt.Sprintf("containerPort: 9180\n              hostPort: %d\n              hostIP: 127.0.0.1\n", metricsPort),
		`          projected:
            defaultMode: 0440
            sources:
              - serviceAccountToken:
                  path: vault-token
                  expirationSeconds: 3600
`, "          hostPath:\n            path: "+tokenDir+"\n            type: Directory\n",
	)
	depFile, cmFile := filepath.Join(dir, "deployment.yaml"), filepath.Join(dir, "caddyfile.yaml")
	writeFile(t, depFile, deployment)
	writeFile(t, cmFile, manifest(t, "caddyfile.yaml"))

	volumesBefore := tool(t, "", "podman", "volume", "ls", "--quiet")
	// A run that was killed may have left its secret and pod: replace them.
	_, _ = toolErr(t, "", "podman", "secret", "rm", "nextcloud-mcp")
	tool(t, "", "podman", "secret", "create", "nextcloud-mcp", secret)
	t.Cleanup(func() { _, _ = toolErr(t, "", "podman", "secret", "rm", "nextcloud-mcp") })
	down := func() string { return tool(t, dir, "podman", "kube", "down", depFile) }
	tool(t, dir, "podman", "kube", "play", "--replace", "--build=false", "--network", "slirp4netns:allow_host_loopback=true",
		"--configmap", cmFile, depFile)
	// The Deployment's pod, as podman names it (nextcloud-mcp-pod-0).
	pod := strings.TrimSpace(tool(t, "", "podman", "pod", "ps", "--format", "{{.Name}}", "--filter", "name=^nextcloud-mcp-pod"))
	if pod == "" || strings.Contains(pod, "\n") {
		t.Fatalf("podman kube play made pods %q, want one of the Deployment nextcloud-mcp", pod)
	}
	downed := false
	t.Cleanup(func() {
		if !downed {
			t.Logf("podman logs, caddy:\n%s", logsOf(t, pod+"-caddy"))
			t.Logf("podman logs, nextcloud-mcp:\n%s", logsOf(t, pod+"-nextcloud-mcp"))
			down()
		}
	})

	site := fmt.Sprintf("127.0.0.1:%d", httpPort)
	ops := fmt.Sprintf("127.0.0.1:%d", metricsPort)
	// Ready: Caddy serves, and reaches the MCP server on the loopback.
	waitReady(t, "http://"+ops+"/ready", 2*time.Minute)

	// Astrolabe's POST through the Service's port.
	req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+site+"/api/v1/users/alice/app-password", strings.NewReader(`{"username":"alice@example.com"}`))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:"+appPassword)))
	req.Header.Set("Content-Type", "application/json")
	if status, body := do(t, req); status != 200 || body != `{"success":true,"message":"App password stored for alice","scopes":null}` {
		t.Fatalf("POST through the pod answered %d %s\ncaddy:\n%s", status, body, logsOf(t, pod+"-caddy"))
	}
	sec, err := vault.Root.KVv2("secret").Get(t.Context(), "nextcloud-mcp/app-passwords/alice")
	if err != nil || sec.Data["app_password"] != appPassword {
		t.Fatalf("Vault holds %v (%v)", sec, err)
	}
	if review.calls() == 0 {
		t.Fatal("Vault never asked the TokenReview API: the pod did not log in with Kubernetes auth")
	}

	// MCP traffic passes through Caddy to the MCP server, and the MCP
	// server holds the delivered password (as a digest).
	stored := mcpStoredDigest(t, "http://"+site+"/mcp", "alice")
	want := sha256.Sum256([]byte(appPassword))
	if stored != hex.EncodeToString(want[:]) {
		t.Fatalf("the MCP server holds digest %q for alice, want the delivered password's", stored)
	}

	// Prometheus's scrape of the pod (port 9180, as annotated) counts it.
	metrics := scrape(t, "http://"+ops+"/metrics")
	for _, series := range []string{
		`caddy_app_password_requests_total{method="POST",outcome="ok",route="app-password"} 1`,
		`caddy_app_password_deliveries_total{outcome="accepted",route="app-password"} 1`,
	} {
		if !hasLine(metrics, series) {
			t.Fatalf("the pod's /metrics has no line %s:\n%s", series, grepLines(metrics, "caddy_app_password"))
		}
	}

	// The MCP server listens on the pod's loopback only, and only Caddy's
	// ports are published.
	infraPid := strings.TrimSpace(tool(t, "", "podman", "pod", "inspect", "--format", "{{.InfraContainerID}}", pod))
	pid := strings.TrimSpace(tool(t, "", "podman", "inspect", "--format", "{{.State.Pid}}", infraPid))
	listeners := podListeners(t, pid)
	t.Logf("listening in the pod's network namespace: %v", listeners)
	if got := listeners[8000]; len(got) != 1 || got[0] != "127.0.0.1" {
		t.Fatalf("the MCP server's port 8000 listens on %v, want 127.0.0.1 only", got)
	}
	for _, p := range []int{8080, 9180} {
		if len(listeners[p]) == 0 {
			t.Fatalf("Caddy's port %d does not listen in the pod: %v", p, listeners)
		}
	}
	ports := tool(t, "", "podman", "port", infraPid)
	for _, line := range strings.Split(strings.TrimSpace(ports), "\n") {
		if !strings.HasPrefix(line, "8080/tcp -> 127.0.0.1:") && !strings.HasPrefix(line, "9180/tcp -> 127.0.0.1:") {
			t.Fatalf("published: %q; want only Caddy's 8080 and 9180, on 127.0.0.1", ports)
		}
	}

	// Non-root, read-only root file system, no privilege escalation, for
	// both containers, as the manifest asks and the runtime applied.
	for name, uid := range map[string]string{pod + "-caddy": "65532", pod + "-nextcloud-mcp": "1000"} {
		ro := strings.TrimSpace(tool(t, "", "podman", "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name))
		cpid := strings.TrimSpace(tool(t, "", "podman", "inspect", "--format", "{{.State.Pid}}", name))
		status, err := os.ReadFile("/proc/" + cpid + "/status")
		if err != nil {
			t.Fatal(err)
		}
		fields := procStatus(string(status))
		if ro != "true" || !strings.HasPrefix(fields["Uid"], uid+"\t") || fields["NoNewPrivs"] != "1" || fields["CapEff"] != "0000000000000000" {
			t.Fatalf("%s: read-only root %s, Uid %q, NoNewPrivs %q, CapEff %q; want true, %s, 1, none", name, ro, fields["Uid"], fields["NoNewPrivs"], fields["CapEff"], uid)
		}
	}

	// No secret in Caddy's log.
	logs := logsOf(t, pod+"-caddy")
	for _, s := range []string{appPassword, review.token, base64.StdEncoding.EncodeToString([]byte("alice:" + appPassword))} {
		if strings.Contains(logs, s) {
			t.Fatal("Caddy's log holds a password, a token or an Authorization header")
		}
	}

	// podman kube down leaves nothing behind.
	downed = true
	down()
	if out, err := toolErr(t, "", "podman", "pod", "exists", pod); err == nil {
		t.Fatalf("pod %s still exists after kube down %s", pod, out)
	}
	if left := tool(t, "", "podman", "ps", "--all", "--quiet", "--filter", "name="+pod); strings.TrimSpace(left) != "" {
		t.Fatalf("containers left after kube down: %s", left)
	}
	if after := tool(t, "", "podman", "volume", "ls", "--quiet"); after != volumesBefore {
		t.Fatalf("volumes before kube play:\n%s\nafter kube down:\n%s", volumesBefore, after)
	}
	for _, addr := range []string{site, ops} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still accepts connections after kube down", addr)
		}
	}
}

// manifest reads deploy/kubernetes/name and makes each replacement (old,
// new pairs), failing when an old text is missing: a changed manifest must
// change the test too, not slip past it.
func manifest(t *testing.T, name string, pairs ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "deploy", "kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("deploy/kubernetes/%s has no %q to replace", name, pairs[i])
		}
		text = strings.ReplaceAll(text, pairs[i], pairs[i+1])
	}
	return text
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// logsOf is a container's output: podman logs copies its standard error
// to its own.
func logsOf(t *testing.T, container string) string {
	t.Helper()
	cmd := exec.Command("podman", "logs", container)
	cmd.Env = containerEnv(t)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// waitReady polls url until it answers 200: the pod's readiness, as the
// kubelet would see it.
func waitReady(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond) // polling a condition, not waiting out a time
	}
	t.Fatalf("%s never answered 200 within %s (last: %s)", url, within, last)
}

// podListeners reads the listening TCP sockets of the network namespace of
// process pid (/proc/<pid>/net/tcp and tcp6) and maps each port to its
// addresses.
func podListeners(t *testing.T, pid string) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	for _, file := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile("/proc/" + pid + "/net/" + file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "0A" { // TCP_LISTEN
				continue
			}
			hexAddr, hexPort, _ := strings.Cut(f[1], ":")
			port, _ := strconv.ParseUint(hexPort, 16, 16)
			raw, _ := hex.DecodeString(hexAddr)
			// The kernel prints each 32-bit word in host (little-endian) order.
			for i := 0; i+4 <= len(raw); i += 4 {
				raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
			}
			out[int(port)] = append(out[int(port)], net.IP(raw).String())
		}
	}
	return out
}

func procStatus(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// mcpStoredDigest asks the MCP server double, over MCP through Caddy, for
// the digest of the app password it holds for user.
func mcpStoredDigest(t *testing.T, endpoint, user string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-deploy", Version: "v1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
	if err != nil {
		t.Fatalf("MCP through Caddy: %v", err)
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "stored_password_sha256", Arguments: map[string]any{"user_id": user}})
	if err != nil || res.IsError {
		t.Fatalf("CallTool through Caddy: %+v %v", res, err)
	}
	var d struct {
		Stored bool   `json:"stored"`
		SHA256 string `json:"sha256"`
	}
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &d); err != nil || !d.Stored {
		t.Fatalf("the MCP server holds nothing for %s: %s (%v)", user, raw, err)
	}
	return d.SHA256
}

// apiServerAudience is the audience a projected service-account token
// gets by default: the API server's own.
const apiServerAudience = "https://kubernetes.default.svc.cluster.local"

// tokenReviewAPI is Kubernetes' TokenReview as Vault's Kubernetes auth
// method calls it: it approves one service account's token, and, as the
// API server does, only for the audiences asked for (its own when none
// are) that the token carries, which it names in the answer.
type tokenReviewAPI struct {
	URL   string
	token string
	mu    sync.Mutex
	n     int
}

func newTokenReviewAPI(t *testing.T, account, namespace string) *tokenReviewAPI {
	t.Helper()
	a := &tokenReviewAPI{token: serviceAccountJWT(account, namespace, apiServerAudience)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			Spec struct {
				Token     string   `json:"token"`
				Audiences []string `json:"audiences"`
			} `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&review)
		asked := review.Spec.Audiences
		if len(asked) == 0 {
			asked = []string{apiServerAudience}
		}
		var granted []string
		for _, aud := range asked {
			if aud == apiServerAudience { // the token's only audience
				granted = append(granted, aud)
			}
		}
		status := map[string]any{"authenticated": false}
		if r.Method == "POST" && r.URL.Path == "/apis/authentication.k8s.io/v1/tokenreviews" && review.Spec.Token == a.token && len(granted) > 0 {
			a.mu.Lock()
			a.n++
			a.mu.Unlock()
			status = map[string]any{"authenticated": true, "audiences": granted, "user": map[string]any{
				"username": "system:serviceaccount:" + namespace + ":" + account, "uid": "uid-" + account,
				"groups": []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace},
			}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "status": status})
	}))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

func (a *tokenReviewAPI) calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// serviceAccountJWT is a projected service-account token as the kubelet
// mounts it (claims under "kubernetes.io", an audience, an expiry).
// Vault's Kubernetes auth, configured without the issuer's keys, leaves
// the signature to the TokenReview API.
func serviceAccountJWT(account, namespace, audience string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now().Unix()
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": apiServerAudience, "aud": []string{audience},
		"sub": "system:serviceaccount:" + namespace + ":" + account, "iat": now, "nbf": now, "exp": now + 3600,
		"kubernetes.io": map[string]any{"namespace": namespace, "serviceaccount": map[string]any{"name": account, "uid": "uid-" + account}},
	}) + "." + base64.RawURLEncoding.EncodeToString([]byte("not-a-signature"))
}

// kubernetesAuth sets Vault up as the README says for the sidecar: the
// module's policy (vault/policy.hcl), the Kubernetes auth method at
// "kubernetes" reviewing tokens at reviewURL, and the role caddy-apppw
// bound to the service account caddy of namespace mcp.
func kubernetesAuth(t *testing.T, vault *devvault.Server, reviewURL string) {
	t.Helper()
	policy, err := os.ReadFile("../vault/policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	sys := vault.Root.Sys()
	if err := sys.PutPolicyWithContext(t.Context(), "caddy-apppw", string(policy)); err != nil {
		t.Fatal(err)
	}
	if err := sys.EnableAuthWithOptionsWithContext(t.Context(), "kubernetes", &api.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]map[string]any{
		"auth/kubernetes/config": {"kubernetes_host": reviewURL, "disable_local_ca_jwt": true},
		"auth/kubernetes/role/caddy-apppw": {"bound_service_account_names": []string{"caddy"}, "bound_service_account_namespaces": []string{"mcp"},
			"token_policies": []string{"caddy-apppw"}, "token_ttl": "1h"},
	} {
		if _, err := vault.Root.Logical().WriteWithContext(t.Context(), path, data); err != nil {
			t.Fatalf("writing %s: %v", path, err)
		}
	}
}
