package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// The probes of the request kinds other than /sse (sse.go). Each checks
// the status and the body, so only the answer the request should get
// counts: a 500, an empty body or a proxy's error page is a wrong answer.

// kibBody is what the backend's /kib answers.
var kibBody = []byte(strings.Repeat("x", 1024))

// kibProbe fetches base/kib: 200 and the backend's 1 KiB, byte for byte.
func kibProbe(client *http.Client, base string) probe {
	return func(ctx context.Context, _ int) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/kib", nil)
		if err != nil {
			return 0, err
		}
		body, err := answer(client, req, http.StatusOK)
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(body, kibBody) {
			return 0, fmt.Errorf("body of %d bytes, not the backend's 1 KiB: %.100q", len(body), body)
		}
		return 0, nil
	}
}

// postProbe provisions a new user id (from id) through site: 200 and
// docs/API.md's success body for that user. stored, if not nil, learns
// each user id so provisioned.
func postProbe(client *http.Client, site string, id func() string, stored func(uid string)) probe {
	return func(ctx context.Context, _ int) (time.Duration, error) {
		uid := id()
		req := provisionRequest(ctx, site, uid, password, `{"username":"`+uid+`"}`)
		body, err := answer(client, req, http.StatusOK)
		if err == nil {
			err = sameJSON(body, `{"success":true,"message":"App password stored for `+uid+`","scopes":null}`)
		}
		if err == nil && stored != nil {
			stored(uid)
		}
		return 0, err
	}
}

// floodProbe posts a malformed password for a new user id: the format
// check's 400 and its error body.
func floodProbe(client *http.Client, site string) probe {
	return func(ctx context.Context, seq int) (time.Duration, error) {
		req := provisionRequest(ctx, site, fmt.Sprintf("flood%07d", seq), "short", "")
		body, err := answer(client, req, http.StatusBadRequest)
		if err != nil {
			return 0, err
		}
		return 0, sameJSON(body, `{"success":false,"error":"Invalid app password format"}`)
	}
}

// rawPutProbe is the provisioning baseline: the module's own write
// (record.go) with the official client, a create-only KV v2 write of the
// module's record for a new user id at the module's depth, which must
// create version 1. stored, if not nil, learns each user id so written.
func rawPutProbe(kv *api.KVv2, id func() string, stored func(uid string)) probe {
	return func(ctx context.Context, _ int) (time.Duration, error) {
		uid := id()
		s, err := kv.Put(ctx, baselinePrefix+"/"+uid, baselineRecord(uid, password, time.Now().Unix()), api.WithCheckAndSet(0))
		if err != nil {
			return 0, err
		}
		if s == nil || s.VersionMetadata == nil || s.VersionMetadata.Version != 1 {
			return 0, fmt.Errorf("the write did not create version 1: %+v", s)
		}
		if stored != nil {
			stored(uid)
		}
		return 0, nil
	}
}

// A rejection is the answer the module gives a POST it refuses before
// Nextcloud is asked; a stand-in MCP server behind plain reverse_proxy
// (the backend) gives the same, so both sides of a rejection scenario are
// checked alike.
type rejection int

const (
	// formatRejected: a malformed password, counted against the user.
	formatRejected rejection = iota
	// limitRejected: a user already out of attempts.
	limitRejected
)

// overLimitPrefix starts the user ids that the backend answers as out of
// attempts, as the module answers them once they are.
const overLimitPrefix = "over"

// backendRetryAfter is the wait the backend's 429 names.
const backendRetryAfter = 3600

// rejectProbe posts Astrolabe's request with a malformed password for the
// user id from id through site, and checks the rejection want.
func rejectProbe(client *http.Client, site string, id func() string, want rejection) probe {
	return func(ctx context.Context, _ int) (time.Duration, error) {
		uid := id()
		resp, err := client.Do(provisionRequest(ctx, site, uid, "short", `{"username":"`+uid+`"}`))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, fmt.Errorf("reading the body: %w", err)
		}
		return 0, checkRejection(want, resp.StatusCode, resp.Header, body)
	}
}

// checkRejection says what is wrong with an answer for the rejection want.
func checkRejection(want rejection, status int, h http.Header, body []byte) error {
	if want == formatRejected {
		if status != http.StatusBadRequest {
			return fmt.Errorf("status %d, want 400: %.200q", status, body)
		}
		return sameJSON(body, `{"success":false,"error":"Invalid app password format"}`)
	}
	if status != http.StatusTooManyRequests {
		return fmt.Errorf("status %d, want 429: %.200q", status, body)
	}
	wait, _ := strconv.Atoi(h.Get("Retry-After"))
	if wait < 1 {
		return fmt.Errorf("Retry-After %q, want whole seconds ≥ 1", h.Get("Retry-After"))
	}
	return sameJSON(body, fmt.Sprintf(`{"success":false,"error":"Rate limit exceeded. Try again in %d seconds."}`, wait))
}

// rejectionFor is the backend's stand-in answer to a POST for uid: what
// the module answers a malformed password, or an out-of-attempts user.
func rejectionFor(w http.ResponseWriter, uid string) {
	w.Header().Set("Content-Type", "application/json")
	if strings.HasPrefix(uid, overLimitPrefix) {
		w.Header().Set("Retry-After", strconv.Itoa(backendRetryAfter))
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"success":false,"error":"Rate limit exceeded. Try again in %d seconds."}`, backendRetryAfter)
		return
	}
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.WriteString(w, `{"success":false,"error":"Invalid app password format"}`)
}

// provisionRequest is Astrolabe's POST for user id with password; body may
// be "".
func provisionRequest(ctx context.Context, site, id, pw, body string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, site+"/api/v1/users/"+id+"/app-password", strings.NewReader(body))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(id+":"+pw)))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// answer runs req and reads the whole answer, which must have the status
// want.
func answer(client *http.Client, req *http.Request, want int) ([]byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return nil, wrongStatus(resp, want)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	return body, nil
}

// wrongStatus says what came instead of want, with the start of the body.
func wrongStatus(resp *http.Response, want int) error {
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return fmt.Errorf("status %d, want %d: %q", resp.StatusCode, want, head)
}

// sameJSON compares a JSON answer with want as values, so key order and
// spacing do not matter but every key and value does.
func sameJSON(body []byte, want string) error {
	var got, exp any
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("body is not JSON (%v): %.100q", err, body)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		return fmt.Errorf("bench: bad expected body %q: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		return fmt.Errorf("body %.200s, want %s", body, want)
	}
	return nil
}
