package mcpserver

import (
	"strings"
	"testing"
)

// TestCutAnswerIsNeverASuccess holds the promise that an answer cut at the
// recorder's cap is never taken for a success, with an answer that would
// be one if the cut were ignored: its first maxAnswer bytes are a whole
// JSON object holding "success": true (the rest is padding). Failing first:
// with the cut flag ignored in readAnswer, this delivery is Accepted.
func TestCutAnswerIsNeverASuccess(t *testing.T) {
	head := `{"success":true,"message":"stored"}`
	body := head + strings.Repeat(" ", maxAnswer-len(head)) + `,"trailer":"past the cap"}`
	r := request("POST", "")
	got := Deliver(r.Context(), jsonAnswer(200, body), r, nil)
	want := Outcome{Refused, 200, `answer without "success": true`, 0}
	if got != want {
		t.Fatalf("an answer cut at %d bytes whose head is {\"success\":true}: got %+v, want %+v", maxAnswer, got, want)
	}
}
