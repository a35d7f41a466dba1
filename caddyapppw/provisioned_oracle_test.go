package caddyapppw

import (
	"fmt"
	"testing"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

// TestSpentLoginBudgetTellsNothing: GET, access, PATCH and DELETE prove a
// password other than the stored one as the stored login name, under that
// login name's budget. An attacker who spent that budget through throwaway
// ids ({"username": "alice@example.com"}) then got 429 for a user who had
// provisioned under that login and 401 for one who had not: an oracle for
// who has provisioned, and as which login. Both now get the same answer,
// after the same Nextcloud checks, until the uid's own budget runs out.
func TestSpentLoginBudgetTellsNothing(t *testing.T) {
	testSpentLoginBudgetTellsNothing(newEnv(t, ""))
}

func TestSpentLoginBudgetTellsNothingOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	testSpentLoginBudgetTellsNothing(newEnv(t, "rate_limit {\n redis "+srv.URL()+"\n }"))
}

func testSpentLoginBudgetTellsNothing(e *env) {
	t := e.t
	// Nextcloud's own throttle per address is not the subject here.
	e.nc.DisableBruteForceProtection()
	e.nc.AddUser("alice", "alice@example.com", alicePW)
	e.nc.AddUser("bob", "bob@example.com", alicePW2)
	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, `{"username":"alice@example.com"}`).
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":null}`)
	// bob has not provisioned; a wrong password of his own counts one
	// attempt, as alice's provisioning counted one of hers. Then both
	// login names' budgets are spent.
	e.call("POST", "/api/v1/users/bob/app-password", "bob:"+alicePW, `{"username":"bob@example.com"}`).
		expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	for _, login := range []string{"alice@example.com", "bob@example.com"} {
		for i := 0; ; i++ {
			a := e.guessAs(fmt.Sprintf("x%s%d", login[:1], i), login, "Guess-Guess-Guess-Guess-Guess")
			if a.status == 429 {
				break
			}
			if i == 5 || a.status != 401 {
				t.Fatalf("guess %d as %s: %d %s", i, login, a.status, a.body)
			}
		}
	}

	const wrong = "Wrong-Wrong-Wrong-Wrong-Wrong"
	routes := []struct{ method, action, body string }{
		{"GET", "app-password", ""},
		{"GET", "access", ""},
		{"PATCH", "scopes", `{"scopes":["notes.read"]}`},
		{"DELETE", "app-password", ""},
		{"GET", "app-password", ""}, // the uid's fifth attempt
		{"GET", "access", ""},       // the uid's budget is spent
	}
	for _, rt := range routes {
		var answers [2]answer
		var calls [2]int64
		for i, uid := range []string{"alice", "bob"} {
			before := e.nc.Calls()
			answers[i] = e.call(rt.method, "/api/v1/users/"+uid+"/"+rt.action, uid+":"+wrong, rt.body)
			calls[i] = e.nc.Calls() - before
		}
		if answers[0].status != answers[1].status || answers[0].body != answers[1].body ||
			answers[0].header.Get("Retry-After") != answers[1].header.Get("Retry-After") || calls[0] != calls[1] {
			t.Errorf("%s %s: provisioned alice got %d %s (%d checks), unprovisioned bob %d %s (%d checks)",
				rt.method, rt.action, answers[0].status, answers[0].body, calls[0], answers[1].status, answers[1].body, calls[1])
		}
	}
	if rec := e.stored("alice"); rec == nil || rec["app_password"] != alicePW {
		t.Errorf("alice's record changed: %v", rec)
	}
}
