package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The harness's own checks: a figure counts only correct answers, a wrong
// answer fails the run, and the /sse scenario tells a proxy that streams
// from one that buffers.

func TestRPSCountsOnlyCorrectAnswers(t *testing.T) {
	wrong := errors.New("wrong")
	r := closedLoop(1, time.Minute, 10, func(_ context.Context, seq int) (time.Duration, error) {
		if seq%2 == 1 {
			return 0, wrong
		}
		return 0, nil
	})
	if r.correct != 5 || r.failures != 5 || len(r.lat) != 5 || !errors.Is(r.firstErr, wrong) {
		t.Fatalf("correct %d, wrong %d, latencies %d, first error %v; want 5, 5, 5, %v", r.correct, r.failures, len(r.lat), r.firstErr, wrong)
	}
	if got, want := r.rps(), 5/r.elapsed.Seconds(); got != want {
		t.Errorf("rps %f, want the 5 correct answers of 10 over %s: %f", got, r.elapsed, want)
	}
	m := merge([]result{r, r})
	if m.correct != 10 || m.failures != 10 || m.rps() != 10/m.elapsed.Seconds() {
		t.Errorf("merged: correct %d, wrong %d, rps %f over %s; want 10, 10, 10 per elapsed", m.correct, m.failures, m.rps(), m.elapsed)
	}

	// A server that answers 500 to everything serves nothing.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	r = closedLoop(2, time.Minute, 10, kibProbe(newClient(2), srv.URL))
	if r.rps() != 0 || r.correct != 0 || r.failures != 10 {
		t.Errorf("against a server answering 500: %.0f req/s, %d correct, %d wrong; want 0, 0, 10", r.rps(), r.correct, r.failures)
	}
}

func TestWrongAnswersFailTheRun(t *testing.T) {
	answering := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	client := newClient(2)
	id := func() string { return "alice" }
	for _, tc := range []struct {
		name  string
		probe probe
		want  string // in the verdict; "" for a correct answer
	}{
		{"kib: 500", kibProbe(client, answering(500, "")), "status 500, want 200"},
		{"kib: short body", kibProbe(client, answering(200, "xxx")), "body of 3 bytes"},
		{"kib: right", kibProbe(client, answering(200, string(kibBody))), ""},
		{"POST: 500", postProbe(client, answering(500, `{"success":false}`), id, nil), "status 500, want 200"},
		{"POST: 502 from the proxy", postProbe(client, answering(502, ""), id, nil), "status 502, want 200"},
		{"POST: 200, someone else's body", postProbe(client, answering(200, `{"success":true,"message":"App password stored for bob","scopes":null}`), id, nil), "App password stored for bob"},
		{"POST: 200, not JSON", postProbe(client, answering(200, "ok"), id, nil), "not JSON"},
		{"POST: right", postProbe(client, answering(200, `{"success":true,"message":"App password stored for alice","scopes":null}`), id, nil), ""},
		{"flood: 401", floodProbe(client, answering(401, `{"success":false,"error":"Invalid app password"}`)), "status 401, want 400"},
		{"flood: 400, other error", floodProbe(client, answering(400, `{"success":false,"error":"Invalid user_id"}`)), "Invalid user_id"},
		{"flood: right", floodProbe(client, answering(400, `{"success":false,"error":"Invalid app password format"}`)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs runs
			rs.add("scenario "+tc.name, "B", closedLoop(2, time.Minute, 4, tc.probe))
			err := rs.verdict()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("verdict on correct answers: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("verdict on wrong answers: nil, the run would exit 0")
			case tc.want != "" && (!strings.Contains(err.Error(), "scenario "+tc.name+", B: 4 of 4 answers wrong") ||
				!strings.Contains(err.Error(), tc.want)):
				t.Fatalf("verdict %q, want the scenario, the count and %q", err, tc.want)
			}
		})
	}

	// A run in which nothing was answered is no measure either.
	var rs runs
	rs.add("silent", "A", closedLoop(1, 10*time.Millisecond, 0, func(ctx context.Context, _ int) (time.Duration, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}))
	if err := rs.verdict(); err == nil || !strings.Contains(err.Error(), "silent, A: no correct answer (1 requests cut off unanswered") {
		t.Errorf("verdict on a run without answers: %v", err)
	}
}

// bufferingProxy is a proxy that reads the whole upstream answer before it
// sends any of it.
func bufferingProxy(t *testing.T, upstream string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+upstream+r.URL.RequestURI(), nil)
		var body []byte
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, err = io.ReadAll(resp.Body) // the whole stream first
			resp.Body.Close()
		}
		if err != nil {
			if r.Context().Err() == nil { // else the client is gone
				t.Error(err)
			}
			return
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// streamingProxy is the standard library's reverse proxy, flushing at once.
func streamingProxy(t *testing.T, upstream string) string {
	u, _ := url.Parse("http://" + upstream)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestSSEBufferingShows(t *testing.T) {
	client := newClient(1)

	// Streaming: every event crosses on its own, the answer is correct.
	// The patience is only a bound on a failing test.
	streaming := newPacer(time.Minute)
	backend, stop := startBackend(streaming)
	defer stop()
	for name, base := range map[string]string{"direct": "http://" + backend, "streaming proxy": streamingProxy(t, backend)} {
		first, err := sseProbe(client, base, streaming)(context.Background(), 0)
		if err != nil || first <= 0 {
			t.Errorf("%s: first event after %s, %v; want a correct stream", name, first, err)
		}
	}

	// Buffering: the first event cannot reach the client before the
	// backend gives up waiting for it to be read, so the stream is short
	// and its first event at least the patience late.
	const patience = 50 * time.Millisecond
	buffered := newPacer(patience)
	backend, stop = startBackend(buffered)
	defer stop()
	first, err := sseProbe(client, bufferingProxy(t, backend), buffered)(context.Background(), 0)
	if err == nil || !strings.Contains(err.Error(), "ended after 1 of 10 events") {
		t.Fatalf("through a buffering proxy: %v; want a wrong answer, the stream ended after 1 of 10 events", err)
	}
	if first < patience {
		t.Errorf("through a buffering proxy the first event came after %s, before the backend's patience %s ran out", first, patience)
	}

	// A smoke run's round is shorter than the backend's patience: through
	// a buffering proxy it gets no answer at all, and the verdict says so.
	var rs runs
	rs.add("pass-through /sse", "B", closedLoop(2, 100*time.Millisecond, 0, sseProbe(client, bufferingProxy(t, backendOf(t, streaming)), streaming)))
	err = rs.verdict()
	if err == nil || !strings.Contains(err.Error(), "pass-through /sse, B: no correct answer (2 requests cut off") ||
		!strings.Contains(err.Error(), "a proxy that holds events back sends nothing until the backend gives up") {
		t.Errorf("verdict on a short run through a buffering proxy: %v", err)
	}
}

func backendOf(t *testing.T, p *pacer) string {
	backend, stop := startBackend(p)
	t.Cleanup(stop)
	return backend
}

// TestSSEBackendWaitsForEachRead drives the backend by hand: it sends the
// next event only when the client says it has read the one before, and
// without that ends the stream after the first.
func TestSSEBackendWaitsForEachRead(t *testing.T) {
	p := newPacer(20 * time.Millisecond)
	backend, stop := startBackend(p)
	defer stop()
	open := func() (*bufio.Reader, func(), func()) {
		id, read, done := p.open()
		resp, err := http.Get("http://" + backend + "/sse?stream=" + id)
		if err != nil {
			t.Fatal(err)
		}
		return bufio.NewReader(resp.Body), read, func() { resp.Body.Close(); done() }
	}

	br, read, done := open()
	for i := range sseEvents {
		if ev, err := readEvent(br); err != nil || ev != sseEvent(i) {
			t.Fatalf("event %d: %q, %v", i+1, ev, err)
		}
		read()
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
		t.Fatalf("after the last event: %q, %v", rest, err)
	}
	done()

	// Unread, the first event is the last.
	br, _, done = open()
	defer done()
	if ev, err := readEvent(br); err != nil || ev != sseEvent(0) {
		t.Fatalf("event 1: %q, %v", ev, err)
	}
	if ev, err := readEvent(br); !errors.Is(err, io.EOF) || ev != "" {
		t.Fatalf("after an unread event: %q, %v; want the end of the stream", ev, err)
	}

	// A stream the harness did not open is refused.
	resp, err := http.Get("http://" + backend + "/sse?stream=nobody")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown stream: status %d, want 400", resp.StatusCode)
	}
}
