package readme

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	md := "intro\n```sh\necho a\n```\n\n1. item\n\n   ```caddyfile\n   {\n   \tlog\n   }\n   ```\n" +
		"````\nnot ``` a close\n````\n~~~ Bash extra\nx\n~~~\n"
	got, err := Parse(md)
	if err != nil {
		t.Fatal(err)
	}
	want := []Block{
		{Lang: "sh", Text: "echo a\n", Line: 2},
		{Lang: "caddyfile", Text: "{\n\tlog\n}\n", Line: 8},
		{Lang: "", Text: "not ``` a close\n", Line: 13},
		{Lang: "bash", Text: "x\n", Line: 16},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	if _, err := Parse("```sh\necho\n"); err == nil {
		t.Fatal("an unclosed block parsed")
	}
}

func TestCommands(t *testing.T) {
	b := Block{Lang: "sh", Text: "# setup\ngo run . -o x   # build\n\nvault write a \\\n    b=c\nls\n"}
	want := []string{"go run . -o x   # build", "vault write a \\\n    b=c", "ls"}
	if got := Commands(b); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
}
