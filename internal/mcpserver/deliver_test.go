package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// next adapts a function to Handler.
type next func(http.ResponseWriter, *http.Request) error

func (f next) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

const password = "Abcde-Fghij-Klmno-Pqrst-Uvwxy"

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// request is a request as the server read it, its body already consumed.
func request(method, body string) *http.Request {
	r := httptest.NewRequest(method, "http://mcp.example/api/v1/users/alice/app-password?x=1", strings.NewReader(body))
	r.Header.Set("Authorization", basic("alice", password))
	_, _ = io.ReadAll(r.Body)
	return r
}

func TestResendCarriesTheOriginalRequest(t *testing.T) {
	body := `{"username":"alice@example.com"}`
	r := request("POST", body)
	r.ContentLength = -1 // it came chunked
	r.TransferEncoding = []string{"chunked"}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Custom", "kept")
	r.Header.Set("Accept-Encoding", "gzip, br")
	r.Header.Set("Expect", "100-continue")
	r.Trailer = http.Header{"X-Trailer": nil}

	var seen *http.Request
	var seenBody, again []byte
	Deliver(r.Context(), next(func(w http.ResponseWriter, got *http.Request) error {
		seen = got
		seenBody, _ = io.ReadAll(got.Body)
		rc, err := got.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		again, _ = io.ReadAll(rc)
		return nil
	}), r, []byte(body))

	if seen.Method != "POST" || seen.URL.String() != r.URL.String() || seen.Host != "mcp.example" {
		t.Fatalf("request line %s %s host %s", seen.Method, seen.URL, seen.Host)
	}
	if string(seenBody) != body || string(again) != body {
		t.Fatalf("body %q, GetBody %q", seenBody, again)
	}
	if seen.ContentLength != int64(len(body)) || seen.Header.Get("Content-Length") != "32" || seen.TransferEncoding != nil || seen.Trailer != nil {
		t.Fatalf("length %d %q, TE %v, trailer %v", seen.ContentLength, seen.Header.Get("Content-Length"), seen.TransferEncoding, seen.Trailer)
	}
	for name, want := range map[string]string{
		"Authorization":   basic("alice", password),
		"Content-Type":    "application/json",
		"X-Custom":        "kept",
		"Accept-Encoding": "",
		"Expect":          "",
	} {
		if got := seen.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// The original is untouched: the handler still answers from it.
	if r.ContentLength != -1 || r.Header.Get("Accept-Encoding") != "gzip, br" || r.Header.Get("Content-Length") != "" {
		t.Fatalf("original changed: %d %v", r.ContentLength, r.Header)
	}
}

func TestResendWithoutBody(t *testing.T) {
	r := request("DELETE", "")
	var seen *http.Request
	Deliver(r.Context(), next(func(w http.ResponseWriter, got *http.Request) error {
		seen = got
		return nil
	}), r, nil)
	if seen.Body != http.NoBody || seen.ContentLength != 0 || seen.Header.Get("Content-Length") != "" {
		t.Fatalf("body %v, length %d %q", seen.Body, seen.ContentLength, seen.Header.Get("Content-Length"))
	}
}

// The caller's body slice may be reused after Deliver returns; the
// request next saw must not change with it (reverse_proxy may retry).
func TestResendOwnsItsBody(t *testing.T) {
	body := []byte(`{"scopes":[]}`)
	r := request("PATCH", string(body))
	var getBody func() (io.ReadCloser, error)
	Deliver(r.Context(), next(func(w http.ResponseWriter, got *http.Request) error {
		getBody = got.GetBody
		return nil
	}), r, body)
	copy(body, "XXXXXXXXXXXXX")
	rc, _ := getBody()
	if b, _ := io.ReadAll(rc); string(b) != `{"scopes":[]}` {
		t.Fatalf("GetBody after the caller reused its slice: %q", b)
	}
}

func jsonAnswer(status int, body string) next {
	return func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		return nil
	}
}

func TestClassify(t *testing.T) {
	huge := `{"success": true` + strings.Repeat(" ", maxAnswer) + `}`
	cases := []struct {
		name string
		next next
		want Outcome
	}{
		{"stored", jsonAnswer(200, `{"success":true,"message":"App password stored for alice","scopes":null}`),
			Outcome{Accepted, 200, "App password stored for alice", 0}},
		{"charset and spaces", func(w http.ResponseWriter, _ *http.Request) error {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = io.WriteString(w, `{ "success" : true }`)
			return nil
		}, Outcome{Accepted, 200, "", 0}},
		{"1xx first", func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusEarlyHints)
			return jsonAnswer(200, `{"success":true,"message":"ok"}`)(w, r)
		}, Outcome{Accepted, 200, "ok", 0}},
		{"success false", jsonAnswer(200, `{"success":false,"error":"nope"}`), Outcome{Refused, 200, "nope", 0}},
		{"success as a string", jsonAnswer(200, `{"success":"true"}`), Outcome{Refused, 200, `answer without "success": true`, 0}},
		{"Success capitalised", jsonAnswer(200, `{"Success":true}`), Outcome{Refused, 200, `answer without "success": true`, 0}},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) error {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, `{"success":true}`)
			return nil
		}, Outcome{Refused, 200, `answer without "success": true`, 0}},
		{"cut at the limit", jsonAnswer(200, huge), Outcome{Refused, 200, `answer without "success": true`, 0}},
		{"rate limited", jsonAnswer(429, `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`),
			Outcome{Refused, 429, "Rate limit exceeded. Try again in 3600 seconds.", 0}},
		{"wrong password", jsonAnswer(401, `{"success":false,"error":"Invalid credentials"}`), Outcome{Refused, 401, "Invalid credentials", 0}},
		{"starlette detail", jsonAnswer(422, `{"detail":"Unprocessable"}`), Outcome{Refused, 422, "Unprocessable", 0}},
		{"plain 404", func(w http.ResponseWriter, _ *http.Request) error {
			http.NotFound(w, nil)
			return nil
		}, Outcome{Refused, 404, "HTTP 404 Not Found", 0}},
		{"nextcloud down behind it", jsonAnswer(502, `{"success":false,"error":"Failed to validate credentials"}`),
			Outcome{Unreachable, 502, "Failed to validate credentials", 0}},
		{"503 empty", func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(503)
			return nil
		}, Outcome{Unreachable, 503, "HTTP 503 Service Unavailable", 0}},
		{"504", jsonAnswer(504, ``), Outcome{Unreachable, 504, "HTTP 504 Gateway Timeout", 0}},
		{"nothing", func(http.ResponseWriter, *http.Request) error { return nil }, Outcome{Unreachable, 0, "no handler answered", 0}},
		{"plain error", func(http.ResponseWriter, *http.Request) error { return errors.New("boom") }, Outcome{Unreachable, 0, "boom", 0}},
		{"caddy handler error", func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusBadGateway, errors.New("dial tcp 127.0.0.1:9: connect: connection refused"))
		}, Outcome{Unreachable, 502, "dial tcp 127.0.0.1:9: connect: connection refused", 0}},
		{"wrapped caddy handler error", func(http.ResponseWriter, *http.Request) error {
			return errPrefix{caddyhttp.Error(499, context.Canceled)}
		}, Outcome{Unreachable, 499, "context canceled", 0}},
		{"aborted mid-answer", func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(200)
			_, _ = io.WriteString(w, `{"success":tr`)
			panic(http.ErrAbortHandler)
		}, Outcome{Unreachable, 0, "the answer was aborted", 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := request("POST", "")
			if got := Deliver(r.Context(), c.next, r, nil); got != c.want {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

type errPrefix struct{ error }

func (e errPrefix) Unwrap() error { return e.error }

func TestOtherPanicsPassThrough(t *testing.T) {
	r := request("POST", "")
	defer func() {
		if v := recover(); v != "bug" {
			t.Fatalf("recovered %v", v)
		}
	}()
	Deliver(r.Context(), next(func(http.ResponseWriter, *http.Request) error { panic("bug") }), r, nil)
}

func TestTextIsSafeForALogLine(t *testing.T) {
	auth := basic("alice", password)
	cred := strings.TrimPrefix(auth, "Basic ")
	long := strings.Repeat("é", 3*maxText)
	cases := map[string]struct{ answer, want string }{
		"controls":        {"line one\nline two\r\n\x1b[31mred\x1b[0m\u202Eevil\u0000", "line one line two [31mred [0m evil"},
		"invalid UTF-8":   {"a\xff\xfeb", "a\uFFFD\uFFFDb"}, // encoding/json replaces each byte
		"echoed password": {"no: " + password + " for alice", "no: [redacted] for alice"},
		"echoed header":   {"got " + auth, "got Basic [redacted]"},
		"long":            {long, strings.Repeat("é", maxText) + "…"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := request("POST", "")
			r.Header.Set("Authorization", auth)
			answer, _ := json.Marshal(map[string]any{"success": false, "error": c.answer})
			got := Deliver(r.Context(), jsonAnswer(400, string(answer)), r, nil)
			if got.Text != c.want {
				t.Fatalf("text %q\nwant %q", got.Text, c.want)
			}
			if strings.Contains(got.Text, password) || strings.Contains(got.Text, cred) {
				t.Fatal("secret in text")
			}
			if utf8.RuneCountInString(got.Text) > maxText+1 || strings.IndexFunc(got.Text, unicode.IsControl) >= 0 {
				t.Fatalf("text %q", got.Text)
			}
		})
	}
	// An error text is cleaned the same way.
	r := request("POST", "")
	got := Deliver(r.Context(), next(func(http.ResponseWriter, *http.Request) error {
		return errors.New("upstream said " + password + "\n\xff\xfe")
	}), r, nil)
	if got.Text != "upstream said [redacted] \uFFFD" {
		t.Fatalf("error text %q", got.Text)
	}
}

// reverse_proxy flushes from a timer goroutine while it writes.
func TestRecorderConcurrentFlush(t *testing.T) {
	rec := newRecorder(maxAnswer)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			http.NewResponseController(rec).Flush()
		}
	}()
	for range 100 {
		_, _ = rec.Write([]byte("x"))
	}
	<-done
	if status, _, body, cut := rec.result(); status != 200 || len(body) != 100 || cut {
		t.Fatalf("%d %d %v", status, len(body), cut)
	}
	if err := http.NewResponseController(rec).Flush(); err != nil {
		t.Fatalf("Flush through ResponseController: %v", err)
	}
	if n, err := rec.Write(bytes.Repeat([]byte("y"), 2*maxAnswer)); n != 2*maxAnswer || err != nil {
		t.Fatalf("a write past the limit: %d %v", n, err)
	}
}
