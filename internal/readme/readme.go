// Package readme reads the fenced code blocks of a Markdown file, so that
// tests can run what README.md prints exactly as it prints it: every
// Caddyfile block is loaded into Caddy, every ```sh block is run.
package readme

import (
	"fmt"
	"os"
	"strings"
)

// Block is one fenced code block.
type Block struct {
	Lang string // the info string's first word: "sh", "caddyfile", or ""
	Text string // the content, without the fence's own indentation
	Line int    // line of the opening fence, from 1
}

// Load reads the fenced blocks of a Markdown file.
func Load(file string) ([]Block, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(string(data))
}

// Parse finds the fenced blocks of Markdown text the way CommonMark does:
// a fence is three or more backticks or tildes indented at most three
// spaces (more inside a list item), closed by a fence of the same
// character at least as long. A block left open is an error rather than
// a block silently lost.
func Parse(markdown string) ([]Block, error) {
	var (
		blocks []Block
		open   *Block
		fence  string
		indent int
		body   []string
	)
	for i, line := range strings.Split(markdown, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if open == nil {
			f := fenceOf(trimmed)
			if f == "" {
				continue
			}
			open = &Block{Lang: strings.ToLower(firstWord(trimmed[len(f):])), Line: i + 1}
			fence, indent, body = f, len(line)-len(trimmed), nil
			continue
		}
		if f := fenceOf(trimmed); f != "" && strings.HasPrefix(f, fence) && strings.TrimSpace(trimmed[len(f):]) == "" {
			open.Text = strings.Join(body, "\n") + "\n"
			blocks = append(blocks, *open)
			open = nil
			continue
		}
		// Remove up to the opening fence's indentation, as CommonMark does.
		n := 0
		for n < indent && n < len(line) && line[n] == ' ' {
			n++
		}
		body = append(body, line[n:])
	}
	if open != nil {
		return nil, fmt.Errorf("the fenced block opened on line %d is never closed", open.Line)
	}
	return blocks, nil
}

// fenceOf returns the run of ``` or ~~~ (three or more) that line starts
// with, or "".
func fenceOf(line string) string {
	for _, c := range []byte{'`', '~'} {
		n := 0
		for n < len(line) && line[n] == c {
			n++
		}
		if n >= 3 {
			return line[:n]
		}
	}
	return ""
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// Commands splits a shell block into its commands as a reader would copy
// them: one per line, a line ending in a backslash continued on the next,
// blank lines and comment lines left out. Each command keeps its text
// exactly, trailing comment included.
func Commands(b Block) []string {
	var out []string
	var cur []string
	for _, line := range strings.Split(strings.TrimRight(b.Text, "\n"), "\n") {
		if len(cur) == 0 {
			t := strings.TrimSpace(line)
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
		}
		cur = append(cur, line)
		if !strings.HasSuffix(line, "\\") {
			out = append(out, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, strings.Join(cur, "\n"))
	}
	return out
}
