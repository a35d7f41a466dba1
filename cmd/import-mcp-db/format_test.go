package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// whyFormat is the reason a row whose password is not in app-password
// format fails with, as printed.
const whyFormat = "the decrypted password is not an app password ([A-Za-z0-9-]{20,256})"

// The importer refuses a row whose token decrypts with the key but whose
// password is not in the format the MCP server checked before storing
// (^[a-zA-Z0-9-]{20,256}$): a character outside the set, one short, one
// long. The rows are Fernet tokens Python's cryptography made, as for the
// other fixtures. Failing first: without the format check in toRecord,
// the three are imported.
func TestImportRefusesPasswordsNotInAppPasswordFormat(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tokens.db")
	f := generate(t, "--sqlite", db, "--bad-format")
	target := newMemTarget()
	code, out, errOut := cli(t, target, map[string]string{"TOKEN_ENCRYPTION_KEY": f.Key}, "--from", "sqlite:///"+db, "--config", "Caddyfile")
	for _, id := range []string{"ivan", "ivo", "ivy"} {
		if f.row(id).Case != "bad_format" {
			t.Fatalf("fixture row %s is %q", id, f.row(id).Case)
		}
		if !strings.Contains(out, "\nfailed "+id+": "+whyFormat+"\n") {
			t.Errorf("%s's row (password of %d characters, not in app-password format) was not refused; exit %d, output:\n%s%s",
				id, len(f.row(id).Password), code, out, errOut)
		}
		if _, ok := target.snapshot()[id]; ok {
			t.Errorf("%s's badly formatted password was written", id)
		}
	}
	if code != exitFailed || !strings.HasSuffix(out, "\n5 imported, 0 skipped, 7 failed\n") {
		t.Errorf("exit %d, output:\n%s%s", code, out, errOut)
	}
	noSecrets(t, out+errOut, f.secrets()...)
}
