package e2e

import (
	"testing"

	"github.com/caddy-apppw/caddy-apppw/internal/readme"
)

// samplesAfter maps each ```sh block that a sample output follows (a
// fenced block without a language, next in README.md) to that sample.
func samplesAfter(blocks []readme.Block) map[int]string {
	out := map[int]string{}
	for i, b := range blocks {
		if b.Lang == "sh" && i+1 < len(blocks) && blocks[i+1].Lang == "" {
			out[b.Line] = blocks[i+1].Text
		}
	}
	return out
}

// onStoredState reports whether cmd is one of the commands on stored
// state whose sample output README.md shows: list, sweep, the importer.
func onStoredState(cmd string) bool {
	return appPasswordList.MatchString(cmd) || appPasswordSweep.MatchString(cmd) || isImporterRun(cmd)
}

// matchSample compares a command's real output with README.md's sample of
// it, the variable parts (user ids, login names, scopes, counts, times,
// the Vault address) let vary: every line printed must have the shape of
// a line of the sample. For list and sweep, whose run here meets every
// case their sample shows, every line of the sample must also have a line
// printed; the import's sample shows cases (a newer record in Vault, a
// row under another key) that cmd/import-mcp-db's TestREADMEImportOutputs
// meets instead.
func (w *stateWorld) matchSample(t *testing.T, where, cmd, out, sample string) {
	t.Helper()
	names := []string{"alice", "bob", "carol", "dave", "frank", "judy", "alice@example.com", "notes.read", "(all)"}
	complete := !isImporterRun(cmd)
	if err := readme.MatchShapes(readme.Shapes(sample, names...), out, complete); err != nil {
		t.Fatalf("%s: the output and README.md's sample of it differ:\n%v\noutput:\n%s\nsample:\n%s", where, err, out, sample)
	}
	t.Logf("%s: the output has the shape of README.md's sample", where)
}
