package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The rejection scenarios count an answer only when it is the module's
// rejection, and the backend behind plain reverse_proxy gives the same
// answers, so both sides are checked alike.

func TestRejectionChecks(t *testing.T) {
	limitBody := func(n string) string {
		return `{"success":false,"error":"Rate limit exceeded. Try again in ` + n + ` seconds."}`
	}
	h := func(retryAfter string) http.Header {
		x := http.Header{}
		if retryAfter != "" {
			x.Set("Retry-After", retryAfter)
		}
		return x
	}
	for _, tc := range []struct {
		name   string
		want   rejection
		status int
		header http.Header
		body   string
		err    string // "" for a right answer
	}{
		{"400 right", formatRejected, 400, h(""), `{"success":false,"error":"Invalid app password format"}`, ""},
		{"400 other error", formatRejected, 400, h(""), `{"success":false,"error":"Invalid user_id"}`, "Invalid user_id"},
		{"401 for a format", formatRejected, 401, h(""), `{"success":false,"error":"Invalid app password"}`, "status 401, want 400"},
		{"429 for a format", formatRejected, 429, h("60"), limitBody("60"), "status 429, want 400"},
		{"429 right", limitRejected, 429, h("3599"), limitBody("3599"), ""},
		{"429 wait differs from Retry-After", limitRejected, 429, h("3599"), limitBody("3600"), "Try again in 3600 seconds"},
		{"429 without Retry-After", limitRejected, 429, h(""), limitBody("3600"), "Retry-After"},
		{"429 not JSON", limitRejected, 429, h("1"), "slow down", "not JSON"},
		{"400 for a limit", limitRejected, 400, h(""), `{"success":false,"error":"Invalid app password format"}`, "status 400, want 429"},
	} {
		err := checkRejection(tc.want, tc.status, tc.header, []byte(tc.body))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}

// TestBackendAnswersAsTheModule runs rejectProbe against the backend: the
// pass-through side of each rejection scenario gets answers the check
// accepts, for the ids each scenario uses.
func TestBackendAnswersAsTheModule(t *testing.T) {
	backend, stop := startBackend(newPacer(time.Second))
	defer stop()
	client := newClient(1)
	for _, tc := range []struct {
		id   string
		want rejection
	}{{"f00000001", formatRejected}, {overLimitPrefix + "00000001", limitRejected}} {
		if _, err := rejectProbe(client, "http://"+backend, func() string { return tc.id }, tc.want)(context.Background(), 0); err != nil {
			t.Errorf("%s: %v", tc.id, err)
		}
	}
	// And a check that fails: the format answer is not a limit answer.
	if _, err := rejectProbe(client, "http://"+backend, func() string { return "f00000001" }, limitRejected)(context.Background(), 0); err == nil {
		t.Error("the backend's 400 passed as a 429")
	}
}

// TestOverLimit spends a user's attempts until the 429, and refuses a
// server that never gives it.
func TestOverLimit(t *testing.T) {
	var attempts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) <= 5 {
			rejectionFor(w, "f")
			return
		}
		rejectionFor(w, overLimitPrefix)
	}))
	defer srv.Close()
	if err := overLimit(newClient(1), srv.URL, "over00000001"); err != nil || attempts.Load() != 6 {
		t.Fatalf("overLimit: %v after %d attempts; want nil after 6", err, attempts.Load())
	}
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rejectionFor(w, "f") }))
	defer never.Close()
	if err := overLimit(newClient(1), never.URL, "over00000001"); err == nil || !strings.Contains(err.Error(), "not out of attempts") {
		t.Errorf("against a server that never limits: %v", err)
	}
}
