package caddyapppw

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A POST or PATCH the MCP server refuses with 401 is answered 502: only a
// DELETE turns the MCP server's 401 into 200 (see deliver). The password
// is revoked in Nextcloud while the delivery waits at the MCP server's
// door, after the module's own check passed, so the MCP server's check
// fails whatever login name it is given. Failing first: with the method
// condition dropped from `kept` in delivery.go, both changes are answered
// 200 while the MCP server keeps its old copy.
func TestDeliveryRefusedWith401IsA502ForPostAndPatch(t *testing.T) {
	for _, c := range []struct {
		method, path, body string
		mcpText            string // the MCP server's text for the refusal
	}{
		{"POST", "/api/v1/users/bob/app-password", "", "Invalid app password"},
		{"PATCH", "/api/v1/users/bob/scopes", `{"scopes": ["notes.read"]}`, "Invalid credentials"},
	} {
		t.Run(c.method, func(t *testing.T) {
			e, mcp := newDeliveryEnv(t, "")
			e.nc.AddUser("bob", "", alicePW)
			if c.method == "PATCH" {
				e.call("POST", "/api/v1/users/bob/app-password", "bob:"+alicePW, "").
					expect(t, 200, `{"success":true,"message":"App password stored for bob","scopes":null}`)
			}
			mcp.hold()
			got := make(chan answer, 1)
			go func() { got <- rawCall(e, c.method, c.path, "bob", alicePW, c.body) }()
			<-mcp.arrived
			e.nc.Revoke("bob", alicePW)
			close(mcp.release)
			a := <-got
			a.expect(t, 502, notAccepted)
			expectDelivery(t, e.lastDelivery(), "warn", msgNotAccepted, "refused", 401, c.mcpText)
		})
	}
}

// rawCall is e.call for a goroutine other than the test's: it reports a
// transport failure as status 0 instead of failing the test there.
func rawCall(e *env, method, path, user, password, body string) answer {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		return answer{body: err.Error()}
	}
	req.SetBasicAuth(user, password)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return answer{body: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{body: err.Error()}
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}
