package devvault

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// shortChild marks the run of this test binary that TestShortBuildsNothing
// starts with -short.
const shortChild = "DEVVAULT_TEST_SHORT_CHILD"

// TestShortBuildsNothing: under go test -short, on a machine where nothing
// is built yet and nothing could be (no DEVVAULT_BIN, an empty cache, no
// PATH for the build script's bash or go), Run refuses with ErrShort
// instead of building, and Start skips the test. It runs this test binary
// again with -short, so it proves the same in the full suite.
func TestShortBuildsNothing(t *testing.T) {
	if os.Getenv(shortChild) == "1" {
		if _, err := Run(Options{}); !errors.Is(err, ErrShort) {
			t.Fatalf("Run under -short: %v, want ErrShort", err)
		}
		t.Run("start", func(t *testing.T) {
			Start(t, Options{})
			t.Fatal("Start under -short did not skip")
		})
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestShortBuildsNothing$", "-test.short", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), shortChild+"=1", "DEVVAULT_BIN=", "CADDY_APPPW_CACHE="+t.TempDir(), "PATH=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the -short run failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"--- SKIP: TestShortBuildsNothing/start",
		"needs the dev Vault: the full suite (scripts/test) runs it, -short does not",
		"--- PASS: TestShortBuildsNothing",
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the -short run did not print %q:\n%s", want, out)
		}
	}
}
