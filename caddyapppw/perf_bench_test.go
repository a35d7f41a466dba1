package caddyapppw

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-apppw/caddy-apppw/internal/devvault"
	"github.com/caddy-apppw/caddy-apppw/internal/nextcloud"
	"github.com/caddy-apppw/caddy-apppw/internal/ratelimit"
	"github.com/caddy-apppw/caddy-apppw/internal/vaultkv"
)

// The handler's benchmarks: what one request costs Caddy in the module,
// the request as Astrolabe sends it, Nextcloud answered in process and
// the store a no-op, so allocs/op are the handler's own (answer, log
// line, limiter, the Nextcloud client's request and answer). The store's
// share is in vaultkv's BenchmarkSaveNew. go run ./bench measures the
// whole.

// benchPassword is the password the in-process Nextcloud accepts for
// every user.
const benchPassword = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"

// nopStore takes every write as a new record and has none to load.
type nopStore struct{}

func (nopStore) Load(context.Context, string) (*vaultkv.Record, error) {
	return nil, vaultkv.ErrNotFound
}
func (nopStore) Save(context.Context, *vaultkv.Record) error          { return nil }
func (nopStore) Delete(context.Context, string) error                 { return nil }
func (nopStore) DeleteIfUnchanged(context.Context, string, int) error { return nil }
func (nopStore) List(context.Context) ([]string, error)               { return nil, nil }

// anyUserNC is Nextcloud accepting benchPassword for every login, as the
// login's own uid, with the body of the real OCS answer.
type anyUserNC struct{}

func (anyUserNC) RoundTrip(r *http.Request) (*http.Response, error) {
	user, pw, _ := r.BasicAuth()
	if pw != benchPassword {
		return &http.Response{StatusCode: http.StatusUnauthorized, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	}
	body := `{"ocs":{"meta":{"status":"ok","statuscode":200,"message":"OK","totalitems":"","itemsperpage":""},"data":{"enabled":true,"storageLocation":"/var/www/html/data/` +
		user + `","id":"` + user + `","lastLogin":1800000000000,"backend":"Database","subadmin":[],"quota":{"free":1,"used":0,"total":1,"relative":0,"quota":-3},"email":null,"displayname":"` +
		user + `","phone":"","address":"","website":"","twitter":"","groups":["users"],"language":"en","locale":""}}}`
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
}

// benchHandler is the handler as Provision sets it up, with attempts per
// user, the no-op store and the in-process Nextcloud, logging JSON to
// nowhere at Caddy's default level.
func benchHandler(b *testing.B, attempts int) *Handler {
	b.Helper()
	h := &Handler{
		Nextcloud: &nextcloud.Config{URL: "http://nextcloud.invalid"},
		RateLimit: &ratelimit.Config{Attempts: attempts, MaxUsers: 1 << 12, Zone: fmt.Sprint("bench-", bareZones.Add(1))},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	old := storeForTests
	storeForTests = func() store { return nopStore{} }
	err := h.Provision(ctx)
	storeForTests = old
	b.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	if err != nil {
		b.Fatal(err)
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	logger := zap.New(core).Named("http.handlers.app_password")
	h.logger, h.audit, h.now = logger, logger.Named("audit"), time.Now
	h.nextcloud.SetTransport(anyUserNC{})
	return h
}

// benchWriter is a ResponseWriter that keeps the status and the size and
// is reused: its own cost is not the handler's.
type benchWriter struct {
	hdr    http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.hdr }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *benchWriter) reset()                      { clear(w.hdr); w.status, w.n = 0, 0 }

// rewindBody is a request body read again for each request.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// benchRequest is one POST app-password per user id, built up front.
type benchRequest struct {
	r    *http.Request
	body []byte
	rb   *rewindBody
}

func newBenchRequests(n int, idPrefix, password string) []benchRequest {
	// Caddy's server puts the vars (client_ip among them) in the context.
	ctx := context.WithValue(context.Background(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.10"})
	reqs := make([]benchRequest, n)
	for i := range reqs {
		uid := fmt.Sprintf("%s%08d", idPrefix, i)
		body := []byte(`{"username":"` + uid + `"}`)
		rb := &rewindBody{}
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://caddy.test/api/v1/users/"+uid+"/app-password", rb)
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(uid+":"+password)))
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = int64(len(body))
		r.RemoteAddr = "192.0.2.10:40000"
		reqs[i] = benchRequest{r: r, body: body, rb: rb}
	}
	return reqs
}

// runBench sends the requests round robin and checks each status.
func runBench(b *testing.B, h *Handler, reqs []benchRequest, want int) {
	w := &benchWriter{hdr: http.Header{}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := &reqs[i%len(reqs)]
		q.rb.Reset(q.body)
		w.reset()
		if err := h.ServeHTTP(w, q.r, nextHandler); err != nil {
			b.Fatal(err)
		}
		if w.status != want {
			b.Fatalf("status %d, want %d", w.status, want)
		}
		i++
	}
}

// echoNC is a Nextcloud on loopback that accepts every login with
// benchPassword as the user of that login name, allocating nothing per
// request (a server's allocations are not the module's). It returns the
// URL.
func echoNC(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go echoLogins(conn)
		}
	}()
	return "http://" + ln.Addr().String()
}

var (
	endOfHead  = []byte("\r\n\r\n")
	authPrefix = []byte("\r\nAuthorization: Basic ")
)

// echoLogins answers each OCS request read from conn with Nextcloud's
// answer for the login of its Authorization header, 401 for another
// password.
func echoLogins(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 16<<10)
	out := make([]byte, 0, 4<<10)
	body := make([]byte, 0, 2<<10)
	cred := make([]byte, 1024)
	have := 0
	for have < len(buf) {
		n, err := conn.Read(buf[have:])
		if err != nil {
			return
		}
		have += n
		for {
			end := bytes.Index(buf[:have], endOfHead)
			if end < 0 {
				break
			}
			head := buf[:end+2]
			login, ok := []byte(nil), false
			if i := bytes.Index(head, authPrefix); i >= 0 {
				v := head[i+len(authPrefix):]
				v = v[:bytes.IndexByte(v, '\r')]
				if n, err := base64.StdEncoding.Decode(cred, v); err == nil {
					var pw []byte
					login, pw, ok = bytes.Cut(cred[:n], []byte(":"))
					ok = ok && string(pw) == benchPassword
				}
			}
			out = out[:0]
			if ok {
				body = append(body[:0], `{"ocs":{"meta":{"status":"ok","statuscode":200,"message":"OK","totalitems":"","itemsperpage":""},"data":{"enabled":true,"storageLocation":"/var/www/html/data/`...)
				body = append(body, login...)
				body = append(body, `","id":"`...)
				body = append(body, login...)
				body = append(body, `","lastLogin":1800000000000,"backend":"Database","subadmin":[],"quota":{"free":1073741824,"used":0,"total":1073741824,"relative":0,"quota":-3},"email":null,"displayname":"`...)
				body = append(body, login...)
				body = append(body, `","display-name":"`...)
				body = append(body, login...)
				body = append(body, `","phone":"","address":"","website":"","twitter":"","groups":[],"language":"en","locale":"","backendCapabilities":{"setDisplayName":true,"setPassword":true}}}}`...)
				out = append(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: "...)
			} else {
				body = append(body[:0], `{"ocs":{"meta":{"status":"failure","statuscode":997,"message":"Current user is not logged in","totalitems":"","itemsperpage":""},"data":[]}}`...)
				out = append(out, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: "...)
			}
			out = strconv.AppendInt(out, int64(len(body)), 10)
			out = append(out, "\r\n\r\n"...)
			out = append(out, body...)
			if _, err := conn.Write(out); err != nil {
				return
			}
			have = copy(buf, buf[end+len(endOfHead):have])
		}
	}
}

// vaultHandler is benchHandler with the Vault store on the dev Vault,
// below a path prefix of its own, and Nextcloud on loopback (echoNC).
func vaultHandler(b *testing.B) *Handler {
	b.Helper()
	if testing.Short() {
		b.Skip("needs the dev Vault")
	}
	sharedVaultOnce.Do(func() { sharedVault, sharedVaultErr = devvault.Run(devvault.Options{}) })
	if sharedVaultErr != nil {
		b.Fatal(sharedVaultErr)
	}
	h := &Handler{
		Nextcloud: &nextcloud.Config{URL: echoNC(b)},
		Vault: &vaultkv.Config{Address: sharedVault.Addr, Token: sharedVault.Token,
			PathPrefix: fmt.Sprintf("bench/%d/app-passwords", time.Now().UnixNano())},
		RateLimit: &ratelimit.Config{Attempts: 5, MaxUsers: 1 << 12, Zone: fmt.Sprint("bench-", bareZones.Add(1))},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	err := h.Provision(ctx)
	b.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	if err != nil {
		b.Fatal(err)
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	logger := zap.New(core).Named("http.handlers.app_password")
	h.logger, h.audit, h.now = logger, logger.Named("audit"), time.Now
	return h
}

// BenchmarkAPIProvisionVault is BenchmarkAPIProvision with the module's
// collaborators for real: the Vault store writing to the dev Vault (its
// own process), the Nextcloud client over loopback. Its allocs/op are the
// whole of a POST's in the module; its CPU profile, the module's share
// of go run ./bench's.
func BenchmarkAPIProvisionVault(b *testing.B) {
	h := vaultHandler(b)
	runBench(b, h, newBenchRequests(1<<16, "user-", benchPassword), http.StatusOK)
}

// BenchmarkAPIProvision is a first POST of a user: checks, Nextcloud,
// the write, the answer, the log and audit lines.
func BenchmarkAPIProvision(b *testing.B) {
	h := benchHandler(b, 5)
	runBench(b, h, newBenchRequests(1<<16, "user-", benchPassword), http.StatusOK)
}

// BenchmarkAPIRejectFormat is a POST with a malformed password for a
// user id not seen before (go run ./bench's "rejected: format 400"):
// the limiter takes a new key at its cap.
func BenchmarkAPIRejectFormat(b *testing.B) {
	h := benchHandler(b, 5)
	runBench(b, h, newBenchRequests(1<<16, "f-", "short"), http.StatusBadRequest)
}

// BenchmarkAPIReject429 is a POST of a user out of attempts
// (go run ./bench's "rejected: 429").
func BenchmarkAPIReject429(b *testing.B) {
	h := benchHandler(b, 5)
	reqs := newBenchRequests(1, "over-", "short")
	for range 5 {
		reqs[0].rb.Reset(reqs[0].body)
		w := &benchWriter{hdr: http.Header{}}
		if err := h.ServeHTTP(w, reqs[0].r, nextHandler); err != nil || w.status != http.StatusBadRequest {
			b.Fatalf("spending the attempts: %d %v", w.status, err)
		}
	}
	runBench(b, h, reqs, http.StatusTooManyRequests)
}
