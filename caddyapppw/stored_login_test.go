package caddyapppw

import (
	"testing"
)

// TestStoredLoginNameOnEveryRoute: a user whose login name is not the uid
// (an e-mail address, an LDAP login) provisions through Astrolabe, which
// sends that login name in the body. Nextcloud binds an app password to the
// login name it was created under, so when a later request carries a
// password other than the stored one, every route must ask Nextcloud as the
// stored login name: asked as the uid, Nextcloud refuses a valid password
// of that login, and accepts one that the stored login does not hold.
func TestStoredLoginNameOnEveryRoute(t *testing.T) {
	const (
		// another app password of the e-mail login (Astrolabe's next
		// token), created while signed in with the name in another case
		sameLoginPW = "Mnbvc-Xzlkj-Hgfds-Apoiu-Ytrew"
		// an app password of the same account, created while signed in
		// by uid
		uidLoginPW = "Plmok-Nijbu-Hvygc-Tfxrd-Zesqa"
		bobOtherPW = "Qazws-Xedcr-Fvtgb-Yhnuj-Mikol"
	)
	e := newEnv(t, "rate_limit 20 1h")
	e.nc.AddUser("alice", "alice@example.com", alicePW)
	e.nc.AddAppPassword("alice", "Alice@Example.com", sameLoginPW)
	e.nc.AddAppPassword("alice", "alice", uidLoginPW)

	e.call("POST", "/api/v1/users/alice/app-password", "alice:"+alicePW, `{"username":"alice@example.com","scopes":["notes.read"]}`).
		expect(t, 200, `{"success":true,"message":"App password stored for alice","scopes":["notes.read"]}`)
	requests := 1

	routes := []struct {
		name, method, path, body string
		ok, refused              string // the answers to sameLoginPW and to uidLoginPW
	}{
		{"GET app-password", "GET", "/api/v1/users/alice/app-password", "",
			`{"success":true,"user_id":"alice","has_app_password":true}`,
			`{"success":false,"error":"Invalid app password"}`},
		{"GET access", "GET", "/api/v1/users/alice/access", "",
			`{"success":true,"user_id":"alice","provisioned":true,"scopes":["notes.read"],"username":"alice@example.com","created_at":1800000000,"updated_at":1800000000}`,
			`{"success":false,"error":"Invalid credentials"}`},
		{"PATCH scopes", "PATCH", "/api/v1/users/alice/scopes", `{"scopes":["deck.read"]}`,
			`{"success":true,"message":"Scopes updated successfully","scopes":["deck.read"]}`,
			`{"success":false,"error":"Invalid credentials"}`},
		{"DELETE app-password", "DELETE", "/api/v1/users/alice/app-password", "",
			`{"success":true,"message":"App password deleted for alice"}`,
			`{"success":false,"error":"Invalid credentials"}`},
	}
	for _, rt := range routes {
		calls := e.nc.Calls()
		e.call(rt.method, rt.path, "alice:"+uidLoginPW, rt.body).expect(t, 401, rt.refused)
		if got := e.stored("alice"); got["app_password"] != alicePW || got["username"] != "alice@example.com" {
			t.Fatalf("%s: a refused request changed the record: %v", rt.name, got)
		}
		e.call(rt.method, rt.path, "alice:"+sameLoginPW, rt.body).expect(t, 200, rt.ok)
		if n := e.nc.Calls() - calls; n != 2 {
			t.Fatalf("%s: %d Nextcloud checks, want 2", rt.name, n)
		}
		requests += 2
	}
	if got := e.stored("alice"); got != nil {
		t.Fatalf("after DELETE Vault holds %v", got)
	}

	// Without a stored login name the uid is the login, in any case.
	e.nc.AddUser("bob", "", alicePW2)
	e.nc.AddAppPassword("bob", "BOB", bobOtherPW)
	e.call("POST", "/api/v1/users/bob/app-password", "bob:"+alicePW2, "").
		expect(t, 200, `{"success":true,"message":"App password stored for bob","scopes":null}`)
	e.call("GET", "/api/v1/users/bob/access", "bob:"+bobOtherPW, "").expect(t, 200,
		`{"success":true,"user_id":"bob","provisioned":true,"scopes":null,"username":null,"created_at":1800000000,"updated_at":1800000000}`)
	requests += 2

	if n := assertNoSecrets(t, e.logFile, alicePW, alicePW2, sameLoginPW, uidLoginPW, bobOtherPW); n != requests {
		t.Fatalf("%d request lines of the module in the log, want %d", n, requests)
	}
}
