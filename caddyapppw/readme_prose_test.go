package caddyapppw

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-apppw/caddy-apppw/internal/readme"
)

// Every `caddy app-password …` command and flag README.md spells, in
// prose or in a ```sh block (`caddy app-password check`, `--json` of list
// and sweep, `--dry-run`, …), is one the registered command accepts:
// internal/readme's ProseFlags finds them, this holds them to the cobra
// commands the module registers with Caddy. (import-mcp-db's, such as
// `--key-env NAME` and `--adapter caddyfile`, are held to the importer in
// its own module.)
func TestREADMECommandSpellings(t *testing.T) {
	text, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	root := &cobra.Command{Use: "app-password"}
	cmd, ok := caddycmd.Commands()["app-password"]
	if !ok {
		t.Fatal("no app-password command is registered with Caddy")
	}
	cmd.CobraFunc(root)
	subs := map[string]*cobra.Command{}
	for _, c := range root.Commands() {
		subs["app-password "+c.Name()] = c
	}
	checked := map[string]bool{}
	for _, u := range readme.ProseFlags(string(text)) {
		if !strings.HasPrefix(u.Command, "app-password ") {
			continue
		}
		sub := subs[u.Command]
		switch {
		case sub == nil:
			t.Errorf("README.md line %d: `caddy %s` is not a command of the module", u.Line, u.Command)
		case u.Flag != "" && sub.Flags().Lookup(strings.TrimPrefix(u.Flag, "--")) == nil:
			t.Errorf("README.md line %d: `caddy %s` has no flag %s", u.Line, u.Command, u.Flag)
		}
		checked["caddy "+u.Command+" "+u.Flag] = true
	}
	// The spellings the README's prose must keep naming.
	for _, want := range []string{"caddy app-password check ", "caddy app-password list --json", "caddy app-password sweep --json",
		"caddy app-password sweep --dry-run"} {
		if !checked[want] {
			t.Errorf("README.md no longer spells %q where this test finds it", strings.TrimSpace(want))
		}
	}
}

// README.md says of two `go list -deps … | grep …` commands that they
// print nothing: the plugin carries no SQLite or Fernet code, and the
// internal packages import neither the handler nor Caddy's HTTP modules.
// Each runs here as printed (a line break inside the span is a space), in
// the repository's root: it must print nothing, its grep must have found
// nothing (exit status 1, pipefail: not a failed go list), and the go
// list on its left must list packages.
func TestREADMEGoListClaims(t *testing.T) {
	text, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	prose := strings.Join(strings.Fields(string(text)), " ")
	claims := regexp.MustCompile("`(go list -deps [^`]*\\| grep [^`]*)` prints nothing").FindAllStringSubmatch(prose, -1)
	if len(claims) != 2 {
		t.Fatalf("README.md: %d `go list -deps … | grep …` prints nothing claims, want 2", len(claims))
	}
	for _, m := range claims {
		command := m[1]
		c := exec.Command("bash", "-o", "pipefail", "-c", command)
		c.Dir = ".."
		var stdout, stderr strings.Builder
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || stdout.Len() > 0 || stderr.Len() > 0 {
			t.Errorf("%s: %v, printed:\n%s%s\nwant nothing printed and grep's exit status 1", command, err, stdout.String(), stderr.String())
		}
		left, _, _ := strings.Cut(command, "|")
		count := exec.Command("bash", "-c", left+" | grep -c caddy-apppw/caddy-apppw/internal/")
		count.Dir = ".."
		out, err := count.Output()
		if err != nil || strings.TrimSpace(string(out)) == "0" {
			t.Errorf("%s lists none of the internal packages (%v): the claim would hold of nothing", left, err)
		}
	}
}
