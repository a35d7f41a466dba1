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
// docs/API.md's success body for that user.
func postProbe(client *http.Client, site string, id func() string) probe {
	return func(ctx context.Context, _ int) (time.Duration, error) {
		uid := id()
		req := provisionRequest(ctx, site, uid, password, `{"username":"`+uid+`"}`)
		body, err := answer(client, req, http.StatusOK)
		if err != nil {
			return 0, err
		}
		return 0, sameJSON(body, `{"success":true,"message":"App password stored for `+uid+`","scopes":null}`)
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

// rawPutProbe is the provisioning baseline: a create-only KV v2 write of
// the module's record with the official client, which must create
// version 1.
func rawPutProbe(kv *api.KVv2, id func() string) probe {
	return func(ctx context.Context, _ int) (time.Duration, error) {
		uid := id()
		now := time.Now().Unix()
		s, err := kv.Put(ctx, "bench/raw/"+uid, map[string]any{
			"user_id": uid, "app_password": password, "username": uid, "scopes": nil,
			"created_at": now, "updated_at": now,
		}, api.WithCheckAndSet(0))
		if err != nil {
			return 0, err
		}
		if s == nil || s.VersionMetadata == nil || s.VersionMetadata.Version != 1 {
			return 0, fmt.Errorf("the write did not create version 1: %+v", s)
		}
		return 0, nil
	}
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
