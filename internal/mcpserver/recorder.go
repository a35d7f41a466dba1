package mcpserver

import (
	"net/http"
	"sync"
)

// recorder is the ResponseWriter a delivery is answered into: it keeps
// the status, the header and the first bytes of the body, and writes
// nothing anywhere.
//
// It gives reverse_proxy what it asks of a ResponseWriter: Header,
// WriteHeader, Write and Flush (through http.ResponseController, for
// streamed answers). Writes never fail, even past the limit — reverse_proxy
// answers a failed write by panicking with http.ErrAbortHandler, and the
// bytes past the limit are not needed to read the MCP server's answer.
// It does not offer Hijack: an upgrade cannot be delivered.
type recorder struct {
	header http.Header

	// mu guards the fields below: reverse_proxy flushes from a timer
	// goroutine while it writes.
	mu     sync.Mutex
	status int
	body   []byte
	limit  int
	cut    bool
}

func newRecorder(limit int) *recorder {
	return &recorder{header: http.Header{}, limit: limit}
}

func (w *recorder) Header() http.Header { return w.header }

// WriteHeader keeps the first final status. Informational answers (1xx,
// which reverse_proxy passes on, like 103 Early Hints) are not the answer.
func (w *recorder) WriteHeader(status int) {
	if status < 200 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == 0 {
		w.status = http.StatusOK
	}
	room := w.limit - len(w.body)
	if len(p) > room {
		w.cut = true
		w.body = append(w.body, p[:max(room, 0)]...)
	} else {
		w.body = append(w.body, p...)
	}
	return len(p), nil
}

// Flush has nothing to send.
func (w *recorder) Flush() {}

// result is the answer: status (0 if none was written), header, body,
// and whether the body was cut at the limit.
func (w *recorder) result() (int, http.Header, []byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status, w.header, w.body, w.cut
}
