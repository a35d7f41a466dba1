package caddyapppw

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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
func (nopStore) Save(context.Context, *vaultkv.Record) error { return nil }
func (nopStore) Delete(context.Context, string) error        { return nil }
func (nopStore) List(context.Context) ([]string, error)      { return nil, nil }

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
