package caddyapppw

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/adapt/*.json from the current adapter")

// TestAdaptGolden pins, byte for byte, the JSON that the Caddyfile adapter
// makes of Caddyfile.example and of every block of caddyfileOptionCases.
// The JSON config is the module's interface to every deployment that
// stores it (caddy adapt, the admin API, config management): a change of
// package layout, of a config struct or of its defaults must not change
// one byte of it. Regenerate with -update only for a deliberate change,
// and say so in the commit.
func TestAdaptGolden(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	// Caddyfile.example reads these at adapt time; pin their defaults.
	for _, v := range []string{"SITE_ADDRESS", "NEXTCLOUD_URL", "VAULT_ADDR", "MCP_UPSTREAM", "CADDY_ADMIN"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	cases := map[string]string{"Caddyfile.example": string(example)}
	for i, c := range caddyfileOptionCases {
		cases[fmt.Sprintf("options-%02d", i)] = "http://127.0.0.1:0 {\n" + c.block + "\n}\n"
	}
	for name, text := range cases {
		got := adapt(t, text)
		file := filepath.Join("testdata", "adapt", name+".json")
		if *updateGolden {
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%s: %v (run with -update to create it)", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: adapted JSON changed\ngot  %s\nwant %s", name, got, want)
		}
	}
}
