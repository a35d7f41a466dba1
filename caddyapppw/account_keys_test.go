package caddyapppw

import (
	"fmt"
	"testing"

	"github.com/caddy-apppw/caddy-apppw/internal/redistest"
)

const rateLimited3600 = `{"success":false,"error":"Rate limit exceeded. Try again in 3600 seconds."}`

// guessAs is a POST through the throwaway user id id, guessing password
// for the login name in the body.
func (e *env) guessAs(id, login, password string) answer {
	e.t.Helper()
	return e.call("POST", "/api/v1/users/"+id+"/app-password", id+":"+password, `{"username": "`+login+`"}`)
}

// expectBlocked checks that a is the 429 of an exhausted account and
// that Nextcloud was not asked for it.
func (e *env) expectBlocked(a answer, callsBefore int64, exact bool) {
	e.t.Helper()
	if exact {
		a.expect(e.t, 429, rateLimited3600)
		if a.header.Get("Retry-After") != "3600" {
			e.t.Fatalf("Retry-After = %q", a.header.Get("Retry-After"))
		}
	} else if !rateLimitedAbout(a, 3600e9) {
		e.t.Fatalf("got %d %s (Retry-After %q), want the 429 of an hour's wait", a.status, a.body, a.header.Get("Retry-After"))
	}
	if n := e.nc.Calls(); n != callsBefore {
		e.t.Fatalf("Nextcloud was asked %d more times", n-callsBefore)
	}
}

// Five wrong guesses at one login through five throwaway ids exhaust
// that login: a sixth, through yet another id, is refused before Nextcloud
// is asked, and so is the account's own id in any case.
func TestLoginNameSharesTheAccountLimit(t *testing.T) {
	e := newEnv(t, "")
	testLoginNameSharesTheAccountLimit(e, true)
}

func TestLoginNameSharesTheAccountLimitOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, "rate_limit {\n redis "+srv.URL()+"\n }")
	testLoginNameSharesTheAccountLimit(e, false)
}

func testLoginNameSharesTheAccountLimit(e *env, exact bool) {
	t := e.t
	e.nc.AddUser("victim", "victim@example.com", alicePW)
	for i := range 5 {
		e.guessAs(fmt.Sprintf("x%04d", i+1), "victim", alicePW2).expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	calls := e.nc.Calls()
	e.expectBlocked(e.guessAs("x0006", "victim", alicePW2), calls, exact)
	e.expectBlocked(e.guessAs("x0007", "VICTIM", alicePW), calls, exact)
	e.expectBlocked(e.call("POST", "/api/v1/users/Victim/app-password", "Victim:"+alicePW, ""), calls, exact)
	// Each throwaway id was counted once, as before.
	e.guessAs("x0001", "other", alicePW2).expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
}

// The same through the e-mail address the victim logs in with: guesses
// at that login exhaust it, whether it comes in the body or as the path's
// user id.
func TestEmailLoginSharesItsLimit(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("victim", "victim@example.com", alicePW)
	for i := range 5 {
		e.guessAs(fmt.Sprintf("x%04d", i+1), "victim@example.com", alicePW2).expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	calls := e.nc.Calls()
	e.expectBlocked(e.call("POST", "/api/v1/users/victim@example.com/app-password", "victim@example.com:"+alicePW2, ""), calls, true)
	e.expectBlocked(e.guessAs("x0006", "Victim@Example.com", alicePW2), calls, true)
}

// A right guess through a throwaway id is answered 403 "User ID
// mismatch" and counted against the uid Nextcloud named as well: the
// account the password opens.
func TestUserIDMismatchCountsAgainstTheAnsweredUID(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("victim", "victim@example.com", alicePW)
	for i := range 5 {
		e.guessAs(fmt.Sprintf("x%04d", i+1), "victim@example.com", alicePW).expect(t, 403, `{"success":false,"error":"User ID mismatch"}`)
	}
	calls := e.nc.Calls()
	// victim was never a path id nor a login name here.
	e.expectBlocked(e.call("GET", "/api/v1/users/victim/app-password", "victim:"+alicePW, ""), calls, true)
}

// TestUnicodeLoginSharesItsLimit is the review's measurement: Nextcloud
// compares login names with mb_strtolower, so "Änne@example.com" and
// "änne@example.com" are one account to it; with only ASCII folded they
// had a budget each (10 wrong guesses reached Nextcloud with attempts 5).
// Five wrong guesses under one spelling exhaust every other spelling,
// final sigma included.
func TestUnicodeLoginSharesItsLimit(t *testing.T) {
	e := newEnv(t, "")
	e.nc.AddUser("anne", "Änne@example.com", alicePW)
	e.nc.AddUser("odos", "ΟΔΟΣ@example.com", alicePW2)
	for i := range 5 {
		e.guessAs(fmt.Sprintf("x%04d", i+1), "änne@example.com", alicePW2).expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
		e.guessAs(fmt.Sprintf("y%04d", i+1), "οδος@example.com", alicePW).expect(t, 401, `{"success":false,"error":"Invalid app password"}`)
	}
	calls := e.nc.Calls()
	e.expectBlocked(e.guessAs("x0006", "Änne@example.com", alicePW), calls, true)
	e.expectBlocked(e.guessAs("x0007", "ÄNNE@EXAMPLE.COM", alicePW), calls, true)
	e.expectBlocked(e.guessAs("y0006", "ΟΔΟΣ@example.com", alicePW2), calls, true)
	e.expectBlocked(e.guessAs("y0007", "οδοσ@example.com", alicePW2), calls, true)
}
