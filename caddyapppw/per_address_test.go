package caddyapppw

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/fakenextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// trustLoopbackProxy makes the test client a proxy Caddy trusts, so the
// X-Forwarded-For of callFrom sets the client address.
func (e *env) trustLoopbackProxy() {
	e.globals = "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"
	e.load(e.caddyfile(e.settings))
}

// callFrom is call with X-Forwarded-For: addr.
func (e *env) callFrom(addr, method, path, auth, body string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(auth)))
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// Every Nextcloud check carries the client's address as Caddy sees it;
// an X-Forwarded-For from a client Caddy does not trust is not passed on.
func TestNextcloudSeesTheClientAddress(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("alice", "", alicePW)
	e.callFrom("203.0.113.9", "POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "").
		expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	e.call("GET", "/api/v1/users/alice/access", "alice:"+alicePW, "").
		expect(t, 200, `{"success":true,"user_id":"alice","provisioned":false,"scopes":null,"username":null}`)

	e.trustLoopbackProxy()
	e.callFrom("203.0.113.9", "POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, "").
		expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	e.callFrom("2001:db8::7", "GET", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").
		expect(t, 200, `{"success":true,"user_id":"alice","has_app_password":false}`)
	want := []string{"127.0.0.1", "127.0.0.1", "203.0.113.9", "2001:db8::7"}
	if got := e.nc.ForwardedFor(); !slices.Equal(got, want) {
		t.Fatalf("Nextcloud saw X-Forwarded-For %q, want %q", got, want)
	}
}

// A Nextcloud that lists Caddy in trusted_proxies throttles the client
// that sprays wrong passwords, not Caddy's address: the other clients'
// checks are not delayed.
func TestNextcloudThrottlesTheSenderNotCaddy(t *testing.T) {
	e := newEnv(t, "")
	e.trustLoopbackProxy()
	e.nc.SetTrustedProxies("127.0.0.1")
	e.nc.AddUser("alice", "", alicePW)
	for i := range 12 {
		id := fmt.Sprintf("spray%02d", i)
		e.callFrom("203.0.113.7", "POST", "/api/v1/users/"+id+"/app-password", id+":"+alicePW2, "")
	}
	if n := e.nc.FailedLogins("203.0.113.7"); n < 10 {
		t.Fatalf("Nextcloud registered %d failed logins against the sender", n)
	}
	e.callFrom("198.51.100.20", "POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	if n := e.nc.FailedLogins("127.0.0.1"); n != 0 {
		t.Fatalf("%d failed logins registered against Caddy's address", n)
	}
	if n := e.nc.Throttled("198.51.100.20"); n != 0 {
		t.Fatalf("the other client was delayed %d times", n)
	}
}

// With per_address 50 1h, fifty wrong passwords from one address, over
// fifty user ids, exhaust that address: the 51st is refused before
// Nextcloud is asked, while another address goes on. Format errors and
// Nextcloud outages do not count.
func TestPerAddressLimit(t *testing.T) {
	e := newEnv(t, "rate_limit {\n per_address 50 1h\n }")
	e.trustLoopbackProxy()
	// Nextcloud's own throttle would answer 429 after ten failures; here
	// the module's ceiling is under test.
	e.nc.DisableBruteForceProtection()
	e.nc.AddUser("alice", "", alicePW)
	const sprayer, other = "203.0.113.7", "203.0.113.8"

	for i := range 10 {
		e.callFrom(sprayer, "POST", fmt.Sprintf("/api/v1/users/fmt%02d/app-password", i), fmt.Sprintf("fmt%02d:short", i), "").
			expect(t, 400, `{"success":false,"error":"Invalid app password format"}`)
	}
	e.nc.SetFault(fakenextcloud.Fault{Status: 503})
	for i := range 5 {
		e.callFrom(sprayer, "POST", fmt.Sprintf("/api/v1/users/down%02d/app-password", i), fmt.Sprintf("down%02d:", i)+alicePW2, "").
			expect(t, 502, `{"success":false,"error":"Nextcloud returned a server error"}`)
	}
	e.nc.SetFault(fakenextcloud.Fault{})
	for i := range 50 {
		id := fmt.Sprintf("spray%02d", i)
		e.callFrom(sprayer, "POST", "/api/v1/users/"+id+"/app-password", id+":"+alicePW2, "").
			expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	calls := e.nc.Calls()
	a := e.callFrom(sprayer, "POST", "/api/v1/users/spray50/app-password", "spray50:"+alicePW2, "")
	e.expectBlocked(a, calls, true)
	// The right password from that address is refused too: Nextcloud is
	// not asked again from there.
	e.expectBlocked(e.callFrom(sprayer, "GET", "/api/v1/users/alice/access", "alice:"+alicePW, ""), calls, true)

	e.callFrom(other, "POST", "/api/v1/users/spray50/app-password", "spray50:"+alicePW2, "").
		expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	e.callFrom(other, "POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, "").
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	ff := e.nc.ForwardedFor()
	if got := ff[len(ff)-2:]; !slices.Equal(got, []string{other, other}) {
		t.Fatalf("the last checks carried X-Forwarded-For %q", got)
	}
	if v := metricValue(t, e.scrape(), "caddy_app_password_tracked_addresses", `zone="`+e.nc.URL+`"`); v != 2 {
		t.Fatalf("tracked_addresses = %v, want 2", v)
	}
}

// IPv6 clients count by their /64.
func TestPerAddressLimitKeysIPv6By64(t *testing.T) {
	e := newEnv(t, "rate_limit {\n per_address 2 1h\n }")
	e.trustLoopbackProxy()
	for i, addr := range []string{"2001:db8:0:1::1", "2001:db8:0:1::2"} {
		id := fmt.Sprint("v6u", i)
		e.callFrom(addr, "POST", "/api/v1/users/"+id+"/app-password", id+":"+alicePW2, "").
			expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	e.expectBlocked(e.callFrom("2001:db8:0:1:ffff::9", "POST", "/api/v1/users/v6u9/app-password", "v6u9:"+alicePW2, ""), e.nc.Calls(), true)
	e.callFrom("2001:db8:0:2::1", "POST", "/api/v1/users/v6u9/app-password", "v6u9:"+alicePW2, "").
		expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
}

// On Redis the per-address count is shared by the replicas, in its own
// keys beside the accounts'.
func TestPerAddressLimitOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, "rate_limit {\n per_address 3 1h\n redis "+srv.URL()+"\n }")
	for i := range 3 {
		id := fmt.Sprint("r", i)
		e.call("POST", "/api/v1/users/"+id+"/app-password", id+":"+alicePW2, "").
			expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	members, err := c.ZRange(t.Context(), "caddy-apppw:addr:"+e.nc.URL+":127.0.0.1", 0, -1).Result()
	if err != nil || len(members) != 3 {
		t.Fatalf("the address's attempts in Redis: %v (%v)", members, err)
	}
	e.expectBlocked(e.call("POST", "/api/v1/users/r9/app-password", "r9:"+alicePW2, ""), e.nc.Calls(), false)
}

// per_address is off by default and adapts from the Caddyfile to its
// JSON; a config without it keeps its JSON.
func TestPerAddressCaddyfile(t *testing.T) {
	for block, want := range map[string]string{
		"app_password {\n rate_limit {\n per_address 50 1h\n }\n }": `"rate_limit":{"per_address":{"failures":50,"window":3600000000000}}`,
		"app_password {\n rate_limit 5 {\n per_address 10\n }\n }":  `"rate_limit":{"attempts":5,"per_address":{"failures":10}}`,
		"app_password {\n rate_limit 5 1h\n }":                      `"rate_limit":{"attempts":5,"window":3600000000000}}`,
	} {
		got, err := handlerJSON(t, block)
		if err != nil || !strings.Contains(got, want) {
			t.Errorf("%q: %s (%v), want %s", block, got, err, want)
		}
	}
	for _, block := range []string{
		"app_password {\n rate_limit {\n per_address\n }\n }",
		"app_password {\n rate_limit {\n per_address 0 1h\n }\n }",
		"app_password {\n rate_limit {\n per_address 5 -1h\n }\n }",
		"app_password {\n rate_limit {\n per_address 5 1h 2\n }\n }",
	} {
		if _, err := handlerJSON(t, block); err == nil {
			t.Errorf("%q accepted", block)
		}
	}
	h := Handler{Nextcloud: &nextcloud.Config{URL: "https://cloud.example.com"}, Vault: &vaultkv.Config{Token: "t"}}
	if err := h.configure(); err != nil || h.RateLimit.PerAddress != nil {
		t.Fatalf("defaults: %v, per_address %+v", err, h.RateLimit.PerAddress)
	}
	h.RateLimit.PerAddress = &ratelimit.PerAddressConfig{Failures: 5}
	if err := h.configure(); err != nil || h.RateLimit.PerAddress.Window != 3600e9 {
		t.Fatalf("per_address window default: %v, %+v", err, h.RateLimit.PerAddress)
	}
}

// A Redis URL that does not parse is reported by the admin API and the
// log without its password.
func TestRedisURLErrorThroughTheAdminAPI(t *testing.T) {
	e := newEnv(t, "")
	const secret = "pa/ss-Word-7"
	cfg := e.caddyfile("rate_limit {\n redis redis://user:" + secret + "@127.0.0.1:6379/0\n }")
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.admin+"/load", strings.NewReader(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || !strings.Contains(string(body), "rate_limit: redis: url") {
		t.Fatalf("load answered %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "pa/ss") || strings.Contains(string(body), "Word-7") {
		t.Fatalf("the admin API's error repeats the password: %s", body)
	}
	log, err := os.ReadFile(e.logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "xxxxx@127.0.0.1:6379") || strings.Contains(string(log), "Word-7") {
		t.Fatalf("the log does not hold the redacted error, or holds the password:\n%s", log)
	}
}
