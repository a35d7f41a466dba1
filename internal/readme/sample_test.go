package readme

import (
	"strings"
	"testing"
)

func TestShapes(t *testing.T) {
	sample := `secret/nextcloud-mcp/app-passwords at https://vault.example.com:8200: 3 users
USER ID  LOGIN              SCOPES      CREATED               UPDATED               AGE
alice    alice@example.com  notes.read  2026-01-01T00:00:00Z  2026-01-01T00:00:00Z  58d3h
bob      bob                (all)       2026-01-01T00:00:00Z  2026-01-02T00:00:00Z  57d3h
`
	shapes := Shapes(sample, "alice", "alice@example.com", "bob", "notes.read", "(all)")
	real := `secret/nextcloud-mcp/app-passwords at http://127.0.0.1:41234: 2 users
USER ID  LOGIN    SCOPES  CREATED               UPDATED               AGE
kept     kept     (none)  2023-11-14T22:13:20Z  2023-11-14T22:13:20Z  1117d7h
revoked  revoked  (all)   2023-11-14T22:13:20Z  2023-11-14T22:13:20Z  1117d7h
`
	if err := MatchShapes(shapes, real, true); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"secret/nextcloud-mcp/app-passwords at http://127.0.0.1:41234: 2 user\n",       // another word
		"secret/nextcloud-mcp/app-passwords on http://127.0.0.1:41234: 2 users\n",      // another word
		"kept     kept     (none)  2023-11-14 22:13:20  2023-11-14T22:13:20Z  1117d\n", // other formats
		"kept kept (none) 2023-11-14T22:13:20Z 2023-11-14T22:13:20Z\n",                 // a column less
	} {
		if err := MatchShapes(shapes, bad, false); err == nil || !strings.Contains(err.Error(), "has the shape of no line") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// A sample line no output line has.
	if err := MatchShapes(shapes, "USER ID  LOGIN  SCOPES  CREATED  UPDATED  AGE\n", true); err == nil ||
		!strings.Contains(err.Error(), "no line of the output has the shape of the sample's") {
		t.Errorf("incomplete output: %v", err)
	}
}
