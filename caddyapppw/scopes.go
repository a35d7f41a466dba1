package caddyapppw

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// defaultScopes are the scopes the Nextcloud MCP server knows: each app's
// read and write, plus mail.send and semantic.read (28 in all).
func defaultScopes() []string {
	apps := []string{"notes", "calendar", "todo", "contacts", "files", "tables", "deck",
		"cookbook", "sharing", "news", "mail", "talk", "collectives"}
	out := make([]string, 0, 2*len(apps)+2)
	for _, a := range apps {
		out = append(out, a+".read", a+".write")
	}
	return append(out, "mail.send", "semantic.read")
}

// scopeSet is the configured list of supported scopes, kept sorted for the
// API's answers and as a set for validation.
type scopeSet struct {
	sorted []string
	set    map[string]struct{}
}

func newScopeSet(scopes []string) (scopeSet, error) {
	s := scopeSet{set: make(map[string]struct{}, len(scopes))}
	for _, sc := range scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n,") {
			return s, fmt.Errorf("scope %q: a scope is one non-empty word without commas", sc)
		}
		if _, dup := s.set[sc]; dup {
			return s, fmt.Errorf("scope %q listed twice", sc)
		}
		s.set[sc] = struct{}{}
	}
	s.sorted = slices.Sorted(maps.Keys(s.set))
	return s, nil
}

// unknown returns the scopes of list that are not supported, in order.
func (s scopeSet) unknown(list []string) []string {
	var bad []string
	for _, sc := range list {
		if _, ok := s.set[sc]; !ok {
			bad = append(bad, sc)
		}
	}
	return bad
}
