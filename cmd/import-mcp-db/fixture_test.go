package main

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// debianPython is Debian's python3, for which python3-cryptography
// installs; a python3 earlier on PATH (pyenv, a venv) may lack it.
const debianPython = "/usr/bin/python3"

// fixture is the manifest make_fixture.py prints: the rows in clear.
type fixture struct {
	Key      string       `json:"key"`
	WrongKey string       `json:"wrong_key"`
	Rows     []fixtureRow `json:"rows"`
}

type fixtureRow struct {
	Case      string  `json:"case"` // ok, wrong_key, corrupt, bad_scopes, bad_user_id, bad_format
	UserID    string  `json:"user_id"`
	Password  string  `json:"password"`
	CreatedAt int64   `json:"created_at"`
	UpdatedAt int64   `json:"updated_at"`
	Scopes    *string `json:"scopes"`
	Username  *string `json:"username"`
}

func (f fixture) row(userID string) fixtureRow {
	for _, r := range f.Rows {
		if r.UserID == userID {
			return r
		}
	}
	panic("no fixture row " + userID)
}

// record is the record the row must become.
func (r fixtureRow) record(t *testing.T) Record {
	t.Helper()
	rec := Record{UserID: r.UserID, AppPassword: r.Password, Username: r.Username, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if r.Scopes != nil {
		if err := json.Unmarshal([]byte(*r.Scopes), &rec.Scopes); err != nil {
			t.Fatal(err)
		}
	}
	return rec
}

// secrets are the strings no output may contain.
func (f fixture) secrets() []string {
	s := []string{f.Key, f.WrongKey}
	for _, r := range f.Rows {
		s = append(s, r.Password)
	}
	return s
}

// needTool fails the test when a system package it needs is missing, or
// skips it under -short only: the full suite must not pass without
// exercising the real thing.
func needTool(t *testing.T, ok bool, what, pkg string) {
	t.Helper()
	if ok {
		return
	}
	if testing.Short() {
		t.Skipf("%s is missing (apt-get install %s); skipped because of -short", what, pkg)
	}
	t.Fatalf("%s is missing: apt-get install %s (scripts/test does)", what, pkg)
}

// generate runs the fixture generator with Debian's python3-cryptography
// and returns its manifest.
func generate(t *testing.T, args ...string) fixture {
	t.Helper()
	ok := exec.Command(debianPython, "-c", "import cryptography.fernet").Run() == nil
	needTool(t, ok, debianPython+" with the cryptography module", "python3-cryptography")
	out, err := exec.Command(debianPython, append([]string{"testdata/make_fixture.py"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("make_fixture.py: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

type envMap map[string]string

func (e envMap) get(k string) string { return e[k] }
