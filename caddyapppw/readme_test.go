package caddyapppw

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMESnippets adapts every complete Caddyfile site in README.md, so
// the documentation cannot drift from what the module parses.
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	adapted := 0
	for _, b := range blocks {
		text := b[1]
		if strings.HasPrefix(text, "app_password [<matcher>]") {
			continue // the syntax summary, not a config
		}
		adapt(t, text)
		adapted++
	}
	if adapted < 5 {
		t.Fatalf("only %d Caddyfile snippets found in README.md", adapted)
	}
}
