package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Handler is the next handler in Caddy's chain. caddyhttp.Handler has this
// method set, so the app_password handler passes its `next` as it is.
type Handler interface {
	ServeHTTP(http.ResponseWriter, *http.Request) error
}

// Kind is how a delivery ended.
type Kind int

const (
	// Accepted: the MCP server answered 2xx with a JSON body holding
	// "success": true.
	Accepted Kind = iota + 1
	// Refused: something answered, but not with a success — the MCP
	// server's own refusals (429 from its limiter, 401 from its Nextcloud
	// check, 400, 403, 404), or another handler's answer.
	Refused
	// Unreachable: no answer came back from the MCP server — the next
	// handler failed (reverse_proxy could not connect, timed out, was
	// cut off), answered 502/503/504, or nothing answered at all.
	Unreachable
)

// String is the kind's name, as used in logs and metric labels.
func (k Kind) String() string {
	switch k {
	case Accepted:
		return "accepted"
	case Refused:
		return "refused"
	case Unreachable:
		return "unreachable"
	}
	return "unknown"
}

// Outcome is what a delivery came to.
type Outcome struct {
	Kind Kind
	// Status is the HTTP status that came back: the MCP server's (or
	// another handler's) answer, or the status of the next handler's
	// error (reverse_proxy gives 502, 504 on a timeout, 499 when the
	// context ended). 0 when there was neither.
	Status int
	// Text says why, for the log: the MCP server's "message" or "error"
	// text, or the cause of the failure. It is at most maxText runes,
	// without control characters, and never holds the request's password
	// or Authorization value.
	Text string
	// RetryAfter is the wait the answer asked for in its Retry-After
	// header (the MCP server's 429 has one), 0 when none.
	RetryAfter time.Duration
}

// maxAnswer bounds how much of an answer's body Deliver keeps: the MCP
// server's answers are a few hundred bytes. A longer body is cut, and an
// answer cut short is never taken for a success.
const maxAnswer = 16 << 10

// errAborted stands for a next handler that aborted the answer (panicked
// with http.ErrAbortHandler): reverse_proxy does so when the upstream
// breaks off mid-answer, and the `abort` directive always does.
var errAborted = errors.New("the answer was aborted")

// Deliver re-sends r to next, with body as its body, and reads the answer
// instead of the client: nothing is written to r's ResponseWriter.
//
// The request next sees is r as it came — method, URL, Host,
// Authorization and the other headers — with these changes, each because
// the body was already read: the body is body, byte for byte, readable
// again through GetBody; Content-Length is its length (also when r came
// chunked), without Transfer-Encoding or trailers; Expect is gone (there
// is nothing to wait for). Accept-Encoding is dropped too, because the
// reader of the answer is now this package, which reads it uncompressed
// (Go's transport still asks the upstream for gzip and decodes it).
// Hop-by-hop headers are reverse_proxy's business, as for any request.
//
// ctx bounds the delivery. It must be r's context or made from it:
// reverse_proxy reads Caddy's replacer and server from it. A caller that
// wants the delivery to finish although the client went away (Vault has
// the change already) passes context.WithoutCancel(r.Context()) with a
// deadline.
func Deliver(ctx context.Context, next Handler, r *http.Request, body []byte) Outcome {
	if ctx == nil {
		ctx = r.Context()
	}
	rec := newRecorder(maxAnswer)
	err := serve(next, rec, resend(ctx, r, body))
	out := classify(rec, err)
	out.Text = clean(out.Text, secrets(r.Header.Get("Authorization")))
	return out
}

// resend makes the request to hand on: a deep copy of r carrying body.
func resend(ctx context.Context, r *http.Request, body []byte) *http.Request {
	out := r.Clone(ctx)
	out.Body, out.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
	if len(body) > 0 {
		body := bytes.Clone(body)
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	out.ContentLength = int64(len(body))
	out.TransferEncoding = nil
	out.Trailer = nil
	out.Header.Del("Trailer")
	out.Header.Del("Expect")
	out.Header.Del("Accept-Encoding")
	if len(body) > 0 || out.Header.Get("Content-Length") != "" {
		out.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return out
}

// serve runs next, turning an aborted answer into an error: the answer
// belongs to this delivery, and the client's connection must not be torn
// down with it.
func serve(next Handler, w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler { //nolint:errorlint // recover() returns the value itself
				panic(v)
			}
			err = errAborted
		}
	}()
	return next.ServeHTTP(w, r)
}

// classify reads the answer.
func classify(rec *recorder, err error) Outcome {
	if err != nil {
		return Outcome{Kind: Unreachable, Status: errorStatus(err), Text: errorText(err)}
	}
	status, header, body, cut := rec.result()
	if status == 0 {
		return Outcome{Kind: Unreachable, Text: "no handler answered"}
	}
	a := readAnswer(header, body, cut)
	out := classifyAnswer(status, a)
	out.RetryAfter = retryAfter(header.Get("Retry-After"))
	return out
}

// retryAfter reads a Retry-After header in seconds (the form the MCP
// server and Caddy send); anything else is no wait.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(min(n, 86400)) * time.Second
}

// classifyAnswer reads an answer's status and body.
func classifyAnswer(status int, a answer) Outcome {
	switch {
	case status >= 200 && status < 300 && a.success:
		return Outcome{Kind: Accepted, Status: status, Text: a.message}
	case status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		return Outcome{Kind: Unreachable, Status: status, Text: a.describe(status)}
	case status >= 200 && status < 300:
		text := a.err
		if text == "" {
			text = `answer without "success": true`
		}
		return Outcome{Kind: Refused, Status: status, Text: text}
	}
	return Outcome{Kind: Refused, Status: status, Text: a.describe(status)}
}

// answer is what classify reads of a body.
type answer struct {
	success      bool   // a JSON object with "success": true
	message, err string // its "message", and its "error" (or "detail")
}

func readAnswer(header http.Header, body []byte, cut bool) answer {
	var a answer
	mt, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	if cut || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return a
	}
	// A map, not a struct: encoding/json matches struct fields without
	// regard to case, and "Success" is not the MCP server's field.
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return a
	}
	a.success = string(fields["success"]) == "true"
	_ = json.Unmarshal(fields["message"], &a.message)
	if json.Unmarshal(fields["error"], &a.err) != nil || a.err == "" {
		// Starlette's own errors (an HTTPException) carry "detail".
		_ = json.Unmarshal(fields["detail"], &a.err)
	}
	return a
}

// describe is the error text, or the status's when there is none.
func (a answer) describe(status int) string {
	if a.err != "" {
		return a.err
	}
	return fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
}

// errorStatus is the HTTP status an error of the next handler carries.
// Caddy's caddyhttp.HandlerError holds it in a StatusCode field, not
// behind a method, and this package does not import Caddy's HTTP
// packages, so the field is read by name (a test holds it to Caddy's
// type).
func errorStatus(err error) int {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if f, ok := statusField(e); ok {
			return int(f.Int())
		}
	}
	return 0
}

func statusField(err error) (reflect.Value, bool) {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return reflect.Value{}, false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.FieldByName("StatusCode")
	return f, f.IsValid() && f.CanInt()
}

// errorText is the cause of an error: a HandlerError's own text starts
// with an id and a Go stack position, which say nothing of the delivery,
// so the text is that of the error the innermost one wraps.
func errorText(err error) string {
	text := err.Error()
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := statusField(e); ok {
			if cause := errors.Unwrap(e); cause != nil {
				text = cause.Error()
			}
		}
	}
	return text
}

// secrets are the strings Text must not hold: the Authorization value's
// credentials and, for BasicAuth, the password.
func secrets(authorization string) []string {
	_, cred, ok := strings.Cut(authorization, " ")
	if !ok || cred == "" {
		return nil
	}
	s := []string{cred}
	if raw, err := base64.StdEncoding.DecodeString(cred); err == nil {
		if _, password, ok := strings.Cut(string(raw), ":"); ok && password != "" {
			s = append(s, password)
		}
	}
	return s
}
