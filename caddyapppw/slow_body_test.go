package caddyapppw

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// TestSlowBodyGetsNoExtraChecksOnRedis is the review's measurement: with
// rate_limit 2 1h on Redis, an attempt in flight counts there only for its
// lease (the time a request can take once reserved). The reservation was
// taken before the body was read, so a client that dripped its body past
// the lease had its in-flight attempts forgotten while they waited: three
// waves of two slow POSTs, each begun after the last one's lease ran out,
// all finished together, got six Nextcloud checks. The body is now read
// before the attempt is reserved: however slowly it comes, the account
// gets two checks.
func TestSlowBodyGetsNoExtraChecksOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	// Redis's timeout is long: a replica that falls back to its own
	// in-process count (fail-local, on a loaded machine) is not the subject.
	e := newEnv(t, "rate_limit 2 1h {\n redis "+srv.URL()+" {\n timeout 10s\n }\n }")
	// A short lease: one Nextcloud check of 1s and two Vault steps of 1s.
	e.vaultAuth += "\n\t\t\ttimeout 1s"
	cfg := strings.Replace(e.caddyfile(e.settings), "nextcloud "+e.nc.URL, "nextcloud "+e.nc.URL+" {\n\t\t\ttimeout 1s\n\t\t}", 1)
	e.load(cfg)
	const lease = 3 * time.Second
	e.nc.AddUser("victim", "", alicePW)
	e.nc.DisableBruteForceProtection()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	redisNow := func() time.Time {
		now, err := rdb.Time(t.Context()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return now
	}

	const body = `{"scopes":null}`
	var conns []net.Conn
	for wave := range 3 {
		start := redisNow()
		for range 2 {
			conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			auth := base64.StdEncoding.EncodeToString([]byte("victim:" + alicePW2))
			// Headers and the body's first byte; the rest comes later.
			fmt.Fprintf(conn, "POST /api/v1/users/victim/app-password HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n"+
				"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", conn.RemoteAddr(), auth, len(body), body[:1])
			conns = append(conns, conn)
		}
		// The slow client: the rest of the body only once Redis's clock
		// is past the lease of anything this wave reserved.
		for wave < 2 && redisNow().Before(start.Add(lease+200*time.Millisecond)) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	calls := e.nc.Calls()
	for _, conn := range conns {
		if _, err := io.WriteString(conn, body[1:]); err != nil {
			t.Fatal(err)
		}
	}
	statuses := map[int]int{}
	for _, conn := range conns {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if n := e.nc.Calls() - calls; n > 2 || statuses[401] != int(n) || statuses[401]+statuses[429] != 6 {
		fallbacks := 0
		for _, l := range e.logLines() {
			if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "shared rate limiter unavailable") {
				fallbacks++
			}
		}
		t.Fatalf("six slow POSTs under rate_limit 2: %d Nextcloud checks, answers %v (Redis fallbacks logged: %d)", n, statuses, fallbacks)
	}
}

// TestBodyReadFirstKeepsTheOrderOfAnswers: the body is read before the
// attempt is reserved, but judged at its place in docs/API.md's order: a
// blocked account is answered 429 whatever its body, and a body too large
// by its Content-Length is not read at all.
func TestBodyReadFirstKeepsTheOrderOfAnswers(t *testing.T) {
	e := newEnv(t, "rate_limit 1 1h")
	e.nc.AddUser("alice", "", alicePW)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW2, `{"username":"alice"}`).
		expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	for _, body := range []string{"{", `{"scopes":"x"}`, strings.Repeat(" ", maxBodyBytes+1)} {
		a := e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, body)
		a.expect(t, 429, rateLimited3600)
		e.call("PATCH", "/api/v1/users/alice/scopes", "alice:"+alicePW, body).expect(t, 429, rateLimited3600)
	}
	e.call("POST", "/api/v1/users/bob/app-password", "bob:"+alicePW, "{").
		expect(t, 400, `{"success":false,"error":"Invalid JSON body"}`)
	e.call("POST", "/api/v1/users/bob/app-password", "bob:"+alicePW, strings.Repeat(" ", maxBodyBytes+1)).
		expect(t, 413, `{"success":false,"error":"Request body too large"}`)
}
