package caddyapppw

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// scrape reads the admin API's /metrics.
func (e *env) scrape() string {
	e.t.Helper()
	resp, err := e.client.Get("http://" + e.admin + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue finds the sample of name whose labels include every
// label="value" pair given (0 when absent).
func metricValue(t *testing.T, text, name string, labels ...string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return v
	}
	return 0
}

func TestMetricsMove(t *testing.T) {
	e := newEnv(t, "rate_limit 1 1h")
	e.nc.AddUser("alice", "", alicePW)
	before := e.scrape()
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 429,
		`{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`)
	e.call("FROB", "/api/v1/users/alice/app-password", "", "")
	e.nc.AddUser("bob", "", alicePW)
	e.nc.Close()
	e.call("GET", "/api/v1/users/bob/access", "bob:"+alicePW2, "").expect(t, 502,
		`{"success":false,"error":"Failed to validate credentials"}`)
	after := e.scrape()

	for _, c := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"caddy_app_password_requests_total", []string{`route="app-password"`, `method="POST"`, `outcome="ok"`}, 1},
		{"caddy_app_password_requests_total", []string{`method="POST"`, `outcome="rate_limited"`}, 1},
		{"caddy_app_password_requests_total", []string{`method="other"`, `outcome="method_not_allowed"`}, 1},
		{"caddy_app_password_rate_limited_total", nil, 1},
		{"caddy_app_password_nextcloud_check_duration_seconds_count", []string{`result="ok"`}, 1},
		{"caddy_app_password_nextcloud_errors_total", []string{`kind="unreachable"`}, 1},
		{"caddy_app_password_vault_operation_duration_seconds_count", []string{`op="save"`}, 1},
		{"caddy_app_password_vault_operation_duration_seconds_count", []string{`op="load"`}, 1},
	} {
		if e.memory() && strings.HasPrefix(c.name, "caddy_app_password_vault_") {
			continue // the Vault store reports these; the memory store does not
		}
		if d := metricValue(t, after, c.name, c.labels...) - metricValue(t, before, c.name, c.labels...); d != c.delta {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, d, c.delta)
		}
	}
	if v := metricValue(t, after, "caddy_app_password_tracked_users", `zone="`+e.nc.URL+`"`); v != 1 {
		t.Errorf("tracked_users = %v, want 1", v)
	}
	for _, secret := range []string{"alice", "bob", alicePW, alicePW2} {
		if strings.Contains(after, secret) {
			t.Errorf("/metrics mentions %q", secret)
		}
	}

	// A Vault outage is counted by kind.
	if e.memory() {
		return
	}
	e.vaultAddr = "http://127.0.0.1:1"
	e.load(e.caddyfile("rate_limit 1 1h"))
	e.call("GET", "/api/v1/users/carol/access", "carol:"+alicePW, "")
	if v := metricValue(t, e.scrape(), "caddy_app_password_vault_errors_total", `op="load"`, `kind="unreachable"`); v < 1 {
		t.Errorf("vault_errors_total{op=load,kind=unreachable} = %v", v)
	}
}

func TestAuditLog(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	e := newEnv(t, "")
	e.globals = fmt.Sprintf("log audit {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude http.handlers.app_password.audit\n\t}", auditFile)
	e.load(e.caddyfile(""))
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password stored for alice","scopes":null}`)
	e.call("GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"user_id":"alice","has_app_password":true}`)
	e.call("PATCH", "/api/v1/users/alice/scopes", "alice:"+alicePW, `{"scopes":["notes.read"]}`).expect(t, 200,
		`{"success":true,"message":"Scopes updated successfully","scopes":["notes.read"]}`)
	e.call("DELETE", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "").expect(t, 401,
		`{"success":false,"error":"Invalid credentials"}`)
	e.call("DELETE", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").expect(t, 200,
		`{"success":true,"message":"App password deleted for alice"}`)

	data, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if m["logger"] != "http.handlers.app_password.audit" || m["user_id"] != "alice" || m["client_ip"] != "127.0.0.1" {
			t.Errorf("audit line %v", m)
		}
		got = append(got, fmt.Sprint(m["msg"], " ", m["route"], " ", m["outcome"], " ", m["status"]))
	}
	want := []string{
		"provisioning app-password ok 200",
		"scope change user-scopes ok 200",
		"deletion app-password invalid_password 401",
		"deletion app-password ok 200",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	assertNoSecrets(t, auditFile, alicePW, alicePW2)
}

func TestReloadUnderLoad(t *testing.T) {
	e := newEnv(t, "")
	// HTTP/2 (h2c here, TLS in production): a server that shuts down
	// gracefully says with GOAWAY which requests it will not serve, and
	// the client sends those again. Over HTTP/1.1 a POST written onto a
	// keep-alive connection just as the old server closes it fails in any
	// server's graceful reload, with or without this module.
	e.globals = "servers {\n\t\tprotocols h1 h2c\n\t}"
	e.load(e.caddyfile(""))
	e.fixedPort = true // the load keeps going to the same address
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	load := &http.Client{Transport: h2c}
	e.nc.AddUser("alice", "", alicePW)
	for range 3 {
		e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "").expect(t, 401,
			`{"success":false,"error":"Invalid app password"}`)
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		done     = make(chan struct{})
		served   int
		tick     = make(chan struct{}, 1) // a request was served
	)
	// servedAtLeast waits until the load has served n requests: the
	// reloads fall between requests however fast they are.
	servedAtLeast := func(n int) {
		for {
			mu.Lock()
			s := served
			mu.Unlock()
			if s >= n {
				return
			}
			<-tick
		}
	}
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				var status int
				var err error
				if i%2 == 0 {
					var resp *http.Response
					resp, err = load.Get(e.base + "/api/v1/scopes")
					if err == nil {
						status = resp.StatusCode
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				} else {
					var resp *http.Response
					resp, err = load.Post(e.base+fmt.Sprintf("/mcp/%d/%d", w, i), "application/json", strings.NewReader(`{"jsonrpc":"2.0"}`))
					if err == nil {
						status = resp.StatusCode
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					if status == http.StatusTeapot {
						status = 200
					}
				}
				mu.Lock()
				served++
				if err != nil || status != 200 {
					failures = append(failures, fmt.Sprint(status, err))
				}
				mu.Unlock()
				select {
				case tick <- struct{}{}:
				default:
				}
			}
		})
	}
	// Three reloads with a changed option while the load runs, through the
	// admin API as `caddy reload` does.
	for i := range 3 {
		servedAtLeast(10 * (i + 1))
		e.reload(e.caddyfile(fmt.Sprintf("rate_limit {\n max_users %d\n }", 1000+i)))
		e.call("GET", "/api/v1/scopes", "", "")
	}
	servedAtLeast(40)
	close(done)
	wg.Wait()
	if len(failures) > 0 || served < 20 {
		t.Fatalf("%d of %d requests failed across reloads: %v", len(failures), served, failures)
	}
	// The three failures before the reloads still count.
	for range 2 {
		e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "").expect(t, 401,
			`{"success":false,"error":"Invalid app password"}`)
	}
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "").expect(t, 429,
		`{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`)
}

// TestSlowBodyIsCutByServerTimeouts: a client that trickles its body
// (slowloris) is cut off by the server's read_body timeout, which
// Caddyfile.example sets; the handler never waits on it forever.
func TestSlowBodyIsCutByServerTimeouts(t *testing.T) {
	e := newEnv(t, "")
	e.globals = "servers {\n\t\ttimeouts {\n\t\t\tread_header 1s\n\t\t\tread_body 1s\n\t\t}\n\t}"
	e.load(e.caddyfile(""))
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/users/alice/app-password HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Length: 1000\r\n\r\n{",
		strings.TrimPrefix(e.base, "http://"), base64.StdEncoding.EncodeToString([]byte("alice:"+alicePW)))
	// The server must end this exchange by itself; the deadline only keeps
	// a broken server from hanging the test.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server kept waiting for the slow body")
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
		t.Fatalf("answer to a slow body: %q", got)
	}
	var logged bool
	for _, l := range e.logLines() {
		logged = logged || l["outcome"] == "invalid_body"
	}
	if !logged {
		t.Fatal("the handler did not log the cut-off body")
	}
}
