package caddyapppw

import (
	"encoding/base64"
	"os"
	"regexp"
	"strings"
	"testing"
)

// assertNoSecrets fails if the file holds any of the passwords, in clear or
// inside a BasicAuth value.
func assertNoSecrets(t *testing.T, file string, passwords ...string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if len(text) == 0 {
		t.Fatal("log file is empty: the check would prove nothing")
	}
	for _, pw := range passwords {
		if strings.Contains(text, pw) {
			t.Errorf("log holds a password")
		}
		for _, user := range []string{"alice", "bob"} {
			b64 := base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
			if strings.Contains(text, b64) {
				t.Errorf("log holds an Authorization value")
			}
		}
	}
	if regexp.MustCompile(`Basic [A-Za-z0-9+/]{8,}`).MatchString(text) {
		t.Errorf("log holds an Authorization header")
	}
}
