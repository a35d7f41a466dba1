package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The /sse scenario stands in for an MCP server streaming progress events
// to a client. The backend sends each event only once the client has read
// the one before, so each event crosses the proxy on its own: a proxy that
// streams passes each at once, while a proxy that buffers holds the first
// until the backend gives up waiting and ends the stream short — a wrong
// answer, not a good score. Pacing by the client's reads rather than by a
// clock keeps the check exact on a loaded machine: only the give-up time
// is a clock, and only a proxy that holds events back ever meets it.

// sseEvents is how many events one stream carries.
const sseEvents = 10

func sseEvent(i int) string {
	return "event: progress\ndata: {\"progress\":" + strconv.Itoa(i) + "}\n\n"
}

// pacer joins the two ends of each stream: the probe registers a stream
// and names it in the request's query; the backend waits on that stream's
// channel for the probe to say it has read the last event sent.
type pacer struct {
	patience time.Duration // how long the backend waits for a read before it ends the stream
	next     atomic.Uint64
	streams  sync.Map // id → chan struct{}
}

func newPacer(patience time.Duration) *pacer { return &pacer{patience: patience} }

// open registers a stream. read tells the backend the client has read an
// event; done forgets the stream.
func (p *pacer) open() (id string, read, done func()) {
	id = strconv.FormatUint(p.next.Add(1), 10)
	reads := make(chan struct{}, 1) // at most one read is ever pending
	p.streams.Store(id, reads)
	read = func() {
		select {
		case reads <- struct{}{}:
		default:
		}
	}
	return id, read, func() { p.streams.Delete(id) }
}

// serve is the backend's /sse handler.
func (p *pacer) serve(w http.ResponseWriter, r *http.Request) {
	v, ok := p.streams.Load(r.URL.Query().Get("stream"))
	if !ok {
		http.Error(w, "unknown stream", http.StatusBadRequest)
		return
	}
	reads := v.(chan struct{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	timer := time.NewTimer(p.patience)
	defer timer.Stop()
	for i := range sseEvents {
		if i > 0 {
			timer.Reset(p.patience)
			select {
			case <-reads:
			case <-timer.C:
				return // event i-1 never reached the client: end the stream short
			case <-r.Context().Done():
				return
			}
		}
		if _, err := io.WriteString(w, sseEvent(i)); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// sseProbe reads one paced stream through base and checks it: status 200,
// text/event-stream, the events in order and nothing after them. first is
// the time to the first event.
func sseProbe(client *http.Client, base string, p *pacer) probe {
	return func(ctx context.Context, _ int) (time.Duration, error) {
		id, read, closeStream := p.open()
		defer closeStream()
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?stream="+id, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, p.late(ctx, "the answer's header", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, wrongStatus(resp, http.StatusOK)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			return 0, fmt.Errorf("Content-Type %q, want text/event-stream", ct)
		}
		br := bufio.NewReader(resp.Body)
		var first time.Duration
		for i := range sseEvents {
			got, err := readEvent(br)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return first, fmt.Errorf("the stream ended after %d of %d events: the backend sends each event only once the client has read the one before, and gives up after %s, so a proxy that holds events back ends the stream short",
					i, sseEvents, p.patience)
			}
			if err != nil {
				return first, p.late(ctx, fmt.Sprintf("event %d of %d", i+1, sseEvents), err)
			}
			if i == 0 {
				first = time.Since(start)
			}
			if want := sseEvent(i); got != want {
				return first, fmt.Errorf("event %d: %q, want %q", i+1, got, want)
			}
			read()
		}
		rest, err := io.ReadAll(br)
		if err != nil {
			return first, fmt.Errorf("after the last event: %w", err)
		}
		if len(rest) > 0 {
			return first, fmt.Errorf("after the last event: %.100q", rest)
		}
		return first, nil
	}
}

// late explains an error met while waiting for what: when the run's end
// cut the wait, it may be a proxy holding the stream back.
func (p *pacer) late(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("waiting for %s: %w (a proxy that holds events back sends nothing until the backend gives up after %s)", what, err, p.patience)
	}
	return fmt.Errorf("waiting for %s: %w", what, err)
}

// readEvent reads one event: its lines up to and with the blank line.
func readEvent(br *bufio.Reader) (string, error) {
	var ev []byte
	for {
		line, err := br.ReadBytes('\n')
		ev = append(ev, line...)
		if err != nil {
			if len(ev) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return string(ev), err
		}
		if len(line) == 1 {
			return string(ev), nil
		}
	}
}
