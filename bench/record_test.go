package main

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// docFields reads the field table of docs/API.md's "Vault layout": field
// name → its documented type.
func docFields(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(data), "\n## Vault layout\n")
	if !ok {
		t.Fatal(`docs/API.md has no "## Vault layout"`)
	}
	_, fields, ok := strings.Cut(layout, "\n### Fields\n")
	if !ok {
		t.Fatal(`docs/API.md's Vault layout has no "### Fields"`)
	}
	fields, _, _ = strings.Cut(fields, "\n### ")
	got := map[string]string{}
	for _, line := range strings.Split(fields, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		got[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[2])
	}
	if len(got) == 0 {
		t.Fatal("no fields in docs/API.md's Vault layout")
	}
	return got
}

// TestBaselineRecordIsTheDocumentedRecord: the baseline writes every field
// of the documented record and no other, each of its documented JSON type.
func TestBaselineRecordIsTheDocumentedRecord(t *testing.T) {
	doc := docFields(t)
	rec, err := asJSON(baselineRecord("alice", password, 1764000000))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(rec)), slices.Sorted(maps.Keys(doc)); !slices.Equal(got, want) {
		t.Fatalf("baseline record fields %v, docs/API.md's %v", got, want)
	}
	for field, typ := range doc {
		v := rec[field]
		var ok bool
		switch x := v.(type) {
		case nil:
			ok = strings.Contains(typ, "`null`")
		case string:
			ok = strings.HasPrefix(typ, "string")
		case float64:
			ok = strings.HasPrefix(typ, "integer") && x == float64(int64(x))
		case []any:
			ok = strings.HasPrefix(typ, "array")
		}
		if !ok {
			t.Errorf("%s: the baseline writes %#v, docs/API.md says %s", field, v, typ)
		}
	}
	// As for Astrolabe's POST {"username": "<uid>"}: the login name is
	// the uid, no scopes, created and updated at once.
	if rec["user_id"] != "alice" || rec["username"] != "alice" || rec["app_password"] != password ||
		rec["scopes"] != nil || rec["created_at"] != rec["updated_at"] {
		t.Errorf("baseline record %s", redact(rec, password))
	}
}

// TestSameAsBaseline checks the comparison the harness makes of a record
// read back from Vault (the module's, and the baseline's) with the
// baseline record.
func TestSameAsBaseline(t *testing.T) {
	// As the Vault client decodes what the module stored: numbers as
	// json.Number.
	stored := func(edit func(map[string]any)) map[string]any {
		m := map[string]any{
			"user_id": "p00000042", "app_password": password, "username": "p00000042", "scopes": nil,
			"created_at": json.Number("1764000000"), "updated_at": json.Number("1764000000"),
		}
		if edit != nil {
			edit(m)
		}
		return m
	}
	if err := sameAsBaseline(stored(nil), "p00000042", password); err != nil {
		t.Fatalf("the module's record: %v", err)
	}
	for name, edit := range map[string]func(map[string]any){
		"username null":          func(m map[string]any) { m["username"] = nil },
		"scopes empty":           func(m map[string]any) { m["scopes"] = []any{} },
		"created_at as a string": func(m map[string]any) { m["created_at"] = "1764000000" },
		"updated later":          func(m map[string]any) { m["updated_at"] = json.Number("1764000001") },
		"a field more":           func(m map[string]any) { m["version"] = json.Number("1") },
		"a field less":           func(m map[string]any) { delete(m, "scopes") },
		"another user":           func(m map[string]any) { m["user_id"] = "p00000043" },
	} {
		err := sameAsBaseline(stored(edit), "p00000042", password)
		if err == nil {
			t.Errorf("%s: no difference found", name)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}
