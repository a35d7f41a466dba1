package mcpserver

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLimitWarning(t *testing.T) {
	cases := []struct {
		attempts int
		window   time.Duration
		warn     bool
	}{
		{5, time.Hour, false},            // the default: the MCP server's own
		{4, time.Hour, false},            // stricter
		{5, 2 * time.Hour, false},        // stricter
		{2, 30 * time.Minute, false},     // 2 × 2 = 4
		{5, 61 * time.Minute, false},     // a longer window
		{6, time.Hour, true},             // one more than the MCP server
		{6, 24 * time.Hour, true},        // six in the first hour
		{5, 59 * time.Minute, true},      // 5 at 0:00 and 5 more at 0:59
		{3, 30 * time.Minute, true},      // 3 × 2 = 6
		{1, 12 * time.Minute, false},     // 1 × 5 = 5
		{1, 11 * time.Minute, true},      // 1 × 6 = 6
		{1, time.Nanosecond, true},       // no overflow
		{1 << 62, time.Nanosecond, true}, // no overflow
		{0, time.Hour, false},            // not configured: the caller's defaults apply
		{5, 0, false},                    // likewise
	}
	for _, c := range cases {
		got := LimitWarning(c.attempts, c.window)
		if (got != "") != c.warn {
			t.Errorf("LimitWarning(%d, %s) = %q", c.attempts, c.window, got)
		}
	}
	want := "rate_limit 3 per 30m lets up to 6 provisions per user through in an hour, " +
		"but the MCP server accepts 5 per 1h: with deliver_to_mcp on, the surplus is stored in Vault " +
		"and answered 502 because the MCP server refuses it (429); set rate_limit to at most 5 per 1h"
	if got := LimitWarning(3, 30*time.Minute); got != want {
		t.Fatalf("text:\n%s\nwant\n%s", got, want)
	}
	if got := LimitWarning(1<<62, time.Nanosecond); !strings.Contains(got, "up to 18446744073709551615 ") {
		t.Fatalf("saturated text: %s", got)
	}
}

// Config is embedded in the handler: its one field must appear at the
// handler's top level as deliver_to_mcp, and not at all when off.
func TestConfigJSON(t *testing.T) {
	type handler struct {
		Prefix string `json:"prefix,omitempty"`
		Config
	}
	for _, c := range []struct {
		h    handler
		json string
	}{
		{handler{Prefix: "/api/v1"}, `{"prefix":"/api/v1"}`},
		{handler{Prefix: "/api/v1", Config: Config{DeliverToMCP: true}}, `{"prefix":"/api/v1","deliver_to_mcp":true}`},
	} {
		b, err := json.Marshal(c.h)
		if err != nil || string(b) != c.json {
			t.Fatalf("%s %v, want %s", b, err, c.json)
		}
		var back handler
		if err := json.Unmarshal(b, &back); err != nil || back != c.h {
			t.Fatalf("round trip %+v %v", back, err)
		}
	}
}
