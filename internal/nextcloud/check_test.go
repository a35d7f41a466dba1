package nextcloud

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// The request Nextcloud gets, header for header: the credentials, the
// OCS header, JSON wanted, the client's address when there is one; no
// other header of ours.
func TestCheckSendsTheOCSRequest(t *testing.T) {
	var (
		mu   sync.Mutex
		got  []*http.Request
		body = okAnswer
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	cfg := &Config{URL: srv.URL + "/"}
	cfg.SetDefaults()
	c, err := New(cfg, caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	for _, ip := range []string{"203.0.113.7", ""} {
		if err := c.Check(t.Context(), "Alice Ü", alicePW, "alice", ip); err != nil {
			t.Fatal(err)
		}
	}
	want := http.Header{
		"Authorization":   {"Basic " + base64.StdEncoding.EncodeToString([]byte("Alice Ü:"+alicePW))},
		"Ocs-Apirequest":  {"true"},
		"Accept":          {"application/json"},
		"X-Forwarded-For": {"203.0.113.7"},
		"Accept-Encoding": {"gzip"},
		"User-Agent":      {"Go-http-client/1.1"},
	}
	for i, r := range got {
		if r.Method != http.MethodGet || r.URL.String() != "/ocs/v2.php/cloud/user?format=json" || r.ContentLength != 0 {
			t.Errorf("request %d: %s %s, %d bytes", i, r.Method, r.URL, r.ContentLength)
		}
		if i == 1 {
			delete(want, "X-Forwarded-For")
		}
		if !reflect.DeepEqual(r.Header, want) {
			t.Errorf("request %d: header\n%v\nwant\n%v", i, r.Header, want)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
}

// Every OCS answer is read to the same outcome: a user only from an
// object "data" with a non-empty string "id" and a success status, a
// refusal from any other well-formed answer, a body error from anything
// that is not JSON or whose ocs, meta or statuscode has the wrong type.
func TestCheckReadsOCSAnswers(t *testing.T) {
	const (
		meta200 = `"meta":{"status":"ok","statuscode":200,"message":"OK"}`
		meta100 = `"meta":{"status":"ok","statuscode":100,"message":"OK"}`
	)
	rejected := func(sc int) error { return RejectedError{HTTPStatus: 200, OCSStatus: sc} }
	for _, tc := range []struct {
		name, body string
		want       error // nil, a RejectedError, a WrongUserError, or BodyError{} for any
	}{
		{"ok", okAnswer, nil},
		{"ok, v1 status", `{"ocs":{` + meta100 + `,"data":{"id":"alice"}}}`, nil},
		{"data before meta", `{"ocs":{"data":{"id":"alice"},` + meta200 + `}}`, nil},
		{"another user", `{"ocs":{` + meta200 + `,"data":{"id":"mallory"}}}`, WrongUserError{"mallory"}},
		{"id differs in case", `{"ocs":{` + meta200 + `,"data":{"id":"Alice"}}}`, WrongUserError{"Alice"}},
		{"997", rejectedAnswer, rejected(997)},
		{"997 with a user", `{"ocs":{"meta":{"statuscode":997},"data":{"id":"alice"}}}`, rejected(997)},
		{"no status", `{"ocs":{"data":{"id":"alice"}}}`, rejected(0)},
		{"data list", `{"ocs":{` + meta200 + `,"data":[]}}`, rejected(200)},
		{"data list first", `{"ocs":{"data":[],` + meta200 + `}}`, rejected(200)},
		{"data string", `{"ocs":{` + meta200 + `,"data":"alice"}}`, rejected(200)},
		{"data null", `{"ocs":{` + meta200 + `,"data":null}}`, rejected(200)},
		{"no data", `{"ocs":{` + meta200 + `}}`, rejected(200)},
		{"no id", `{"ocs":{` + meta200 + `,"data":{"uid":"alice"}}}`, rejected(200)},
		{"empty id", `{"ocs":{` + meta200 + `,"data":{"id":""}}}`, rejected(200)},
		{"null id", `{"ocs":{` + meta200 + `,"data":{"id":null}}}`, rejected(200)},
		{"numeric id", `{"ocs":{` + meta200 + `,"data":{"id":7}}}`, rejected(200)},
		{"id then a numeric id", `{"ocs":{` + meta200 + `,"data":{"id":"alice","id":7}}}`, rejected(200)},
		{"numeric id then id", `{"ocs":{` + meta200 + `,"data":{"id":7,"id":"alice"}}}`, rejected(200)},
		{"data twice, list last", `{"ocs":{` + meta200 + `,"data":{"id":"alice"},"data":[]}}`, rejected(200)},
		{"data twice, user last", `{"ocs":{` + meta200 + `,"data":[],"data":{"id":"alice"}}}`, nil},
		// The one difference of the one-pass read (readOCS): two data
		// objects fill the same fields. Decoded apart, the last one,
		// naming nobody, would refuse. Nextcloud names each member once.
		{"data twice, both objects", `{"ocs":{` + meta200 + `,"data":{"id":"alice"},"data":{}}}`, nil},
		{"string status", `{"ocs":{"meta":{"statuscode":"200"},"data":{"id":"alice"}}}`, BodyError{}},
		{"string status after a data list", `{"ocs":{"data":[],"meta":{"statuscode":"200"}}}`, BodyError{}},
		{"meta list", `{"ocs":{"meta":[],"data":{"id":"alice"}}}`, BodyError{}},
		{"ocs list", `{"ocs":[]}`, BodyError{}},
		{"not JSON", `<html>maintenance</html>`, BodyError{}},
		{"trailing bytes", okAnswer + `x`, BodyError{}},
		{"two answers", okAnswer + okAnswer, BodyError{}},
		{"empty", ``, BodyError{}},
		{"list", `[]`, BodyError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			cfg := &Config{URL: srv.URL}
			cfg.SetDefaults()
			c, err := New(cfg, caddy.NewReplacer())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Check(t.Context(), "alice", alicePW, "alice", "")
			if _, ok := tc.want.(BodyError); ok {
				if !errors.As(err, new(BodyError)) {
					t.Fatalf("got %#v, want a BodyError", err)
				}
				return
			}
			if !reflect.DeepEqual(err, tc.want) {
				t.Fatalf("got %#v, want %#v", err, tc.want)
			}
		})
	}
}
