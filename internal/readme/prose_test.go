package readme

import (
	"reflect"
	"testing"
)

func TestProseFlags(t *testing.T) {
	md := "# Listing\n\n`caddy app-password list` lists users. `--json` prints\nJSON.\n\n" +
		"```sh\n./import-mcp-db --from x --dry-run\n```\n\n" +
		"1. `--key-env NAME` reads the key (`caddy run --config` reads `--config`).\n" +
		"2. **Import**: the same without `--dry-run`; see `caddy app-password\ncheck`.\n\n" +
		"```sh\nxcaddy build --with x\n```\n\n`--with` takes the module.\n\n" +
		"## Sweep\n\n`--json` here names no command.\n"
	want := []FlagUse{
		{"app-password list", "", "", 3},
		{"app-password list", "--json", "", 3},
		{"import-mcp-db", "", "", 7},
		{"import-mcp-db", "--from", "x", 7},
		{"import-mcp-db", "--dry-run", "", 7},
		{"import-mcp-db", "--key-env", "NAME", 10},
		{"import-mcp-db", "--config", "", 10},
		{"import-mcp-db", "--dry-run", "", 11},
		{"app-password check", "", "", 11},
	}
	if got := ProseFlags(md); !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}
}
