package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// caddyAppPassword runs `caddy app-password <args>` in this process, as
// the caddy binary built with the plugin would (the same registered cobra
// command), and returns what it printed on stdout.
func caddyAppPassword(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c, ok := caddycmd.Commands()["app-password"]
	if !ok || c.CobraFunc == nil {
		t.Fatal("the plugin registers no `caddy app-password` command")
	}
	root := &cobra.Command{Use: c.Name, SilenceUsage: true}
	c.CobraFunc(root)
	root.SetArgs(args)

	// The command prints to os.Stdout: catch it through a pipe.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, r); close(copied) }()
	err = root.Execute()
	os.Stdout = stdout
	w.Close()
	<-copied
	r.Close()
	return out.String(), err
}

// listed checks that `caddy app-password list` on the Caddyfile the
// import read shows exactly the users in Vault, each with the fields of
// its record.
func (e *vaultEnv) listed() {
	t := e.t
	t.Helper()
	want := e.snapshot()

	out, err := caddyAppPassword(t, "list", "--config", e.caddyfile, "--json")
	if err != nil {
		t.Fatalf("caddy app-password list --json: %v\n%s", err, out)
	}
	var users []struct {
		UserID    string   `json:"user_id"`
		Username  *string  `json:"username"`
		Scopes    []string `json:"scopes"`
		CreatedAt int64    `json:"created_at"`
		UpdatedAt int64    `json:"updated_at"`
		Error     string   `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &users); err != nil {
		t.Fatalf("caddy app-password list --json: %v\n%s", err, out)
	}
	got := map[string]Record{}
	for _, u := range users {
		if u.Error != "" {
			t.Errorf("list: %s: %s", u.UserID, u.Error)
		}
		got[u.UserID] = Record{UserID: u.UserID, Username: u.Username, Scopes: u.Scopes, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
	}
	for id, r := range want {
		r.AppPassword = "" // list never shows it
		want[id] = r
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("caddy app-password list --json:\n%s\nwant the users %+v", out, want)
	}

	// The table an operator reads: a header with the count, a line per
	// user, no password.
	out, err = caddyAppPassword(t, "list", "--config", e.caddyfile)
	if err != nil {
		t.Fatalf("caddy app-password list: %v\n%s", err, out)
	}
	if !strings.Contains(out, ": 5 users\n") {
		t.Errorf("caddy app-password list:\n%s\nwant 5 users", out)
	}
	for id, r := range e.snapshot() {
		if !strings.Contains(out, "\n"+id+" ") {
			t.Errorf("caddy app-password list does not show %s:\n%s", id, out)
		}
		noSecrets(t, out, r.AppPassword)
	}
}
