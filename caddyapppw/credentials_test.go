package caddyapppw

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestValidUserID(t *testing.T) {
	for _, id := range []string{"alice", "Alice_2", "a.b-c@d", "o'brien", "j doe", strings.Repeat("x", 64), "..."} {
		if !validUserID(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "a\x00b", "a\nb", "é", strings.Repeat("x", 65), "a%2Fb", "a+b", "a\\b"} {
		if validUserID(id) {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestPasswordFormats(t *testing.T) {
	cases := []struct {
		pw           string
		dflt, strict bool
	}{
		{"Abcde-Fghij-Klmno-Pqrst-Uvwxy", true, true},
		{"abcdefghijklmnopqrst", true, false},
		{strings.Repeat("a", 72), true, false},
		{strings.Repeat("a", 256), true, false},
		{strings.Repeat("a", 257), false, false},
		{strings.Repeat("a", 19), false, false},
		{"Abcde-Fghij-Klmno-Pqrst-Uvwx!", false, false},
		{"Abcde_Fghij_Klmno_Pqrst_Uvwxy", false, false},
		{"Abcdef-Fghij-Klmno-Pqrst-Uvwx", true, false},
		{"Abcde-Fghij-Klmno-Pqrst-Uvwxyz", true, false},
		{"", false, false},
	}
	for _, c := range cases {
		if got := formatDefault.valid(c.pw); got != c.dflt {
			t.Errorf("default(%q) = %v", c.pw, got)
		}
		if got := formatStrict.valid(c.pw); got != c.strict {
			t.Errorf("strict(%q) = %v", c.pw, got)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	cases := []struct {
		header, user, pw string
		err              *apiError
	}{
		{"", "", "", errMissingAuth},
		{"Bearer x", "", "", errMissingAuth},
		{"Basic", "", "", errMissingAuth},
		{"Basic YWxpY2U6cHc=", "alice", "pw", nil},
		{"basic YWxpY2U6cHc=", "alice", "pw", nil},
		{"Basic YWxpY2U6cDp3", "alice", "p:w", nil},
		{"Basic YWxpY2U=", "", "", errBadAuthFormat},
		{"Basic %%%", "", "", errBadAuthFormat},
		{"Basic /w==", "", "", errBadAuthFormat},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		u, p, err := basicAuth(r)
		if u != c.user || p != c.pw || err != c.err {
			t.Errorf("%q: got (%q, %q, %v)", c.header, u, p, err)
		}
	}
}

func TestSecretsEqual(t *testing.T) {
	if !secretsEqual("abc", "abc") || secretsEqual("abc", "abd") || secretsEqual("abc", "abcd") || secretsEqual("", "x") {
		t.Fatal("secretsEqual is wrong")
	}
}
